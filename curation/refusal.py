"""Refusal detector: scores evidence that an assistant reply refuses instead of helping.

A single phrase is weak proof ("I'm sorry" opens condolences and role-play lines too), so
the detector adds up weighted cues from several families -- refusal openers, AI
self-reference, moralising, capability and knowledge-cutoff disclaimers, policy language,
vendor self-identification -- weights each by where it sits (the opening sentences decide
what a reply is), and subtracts credit when the reply goes on to deliver substantial
content. ``refusal_score`` returns a score in [0, 1) and the evidence strings, so a
reject row can say why; ``is_refusal`` compares it with a threshold.

Only English cues are known. Each cue is gated by a substring test on the lowered opening,
so a helpful reply costs a few substring tests, not two dozen regex scans.
"""
from __future__ import annotations

import re

# How much of the text the detector reads: the opening decides; the tail is read for the
# closing "anything else?" redirect that full refusals end with.
OPENING_CHARS = 700
TAIL_CHARS = 300
DEFAULT_THRESHOLD = 0.5

_I = re.IGNORECASE

# (family, weight, pattern). Weights are points; the score is points / (points + 1), so
# 1 point = 0.5. A strong refusal opener alone reaches the default threshold.
_CUES: list[tuple[str, float, str]] = [
    # Refusing the request itself: the strongest evidence.
    ("refusal", 1.2, r"\bI (?:cannot|can ?not|can't|can’t|won't|won’t|will not|am unable to|'m unable to|’m unable to|am not able to|'m not able to|’m not able to|must decline to|must respectfully decline to|refuse to|am not going to|'m not going to|’m not going to) "
                     r"(?:fulfill|fulfil|comply|assist|help(?! but\b)|provide|create|generate|write|produce|engage|participate|support|give|offer|share|answer|complete|do that|do this|draft|compose|develop|design|make|facilitate|encourage|promote|condone|endorse|recommend|respond|continue|perform|carry out|describe|explain|disclose|reveal)"
                     r"(?! (?:how|what|why)\b)(?![^.!?\n]{0,80}\benough\b)"),
    ("refusal", 1.2, r"\b(?:I must|I have to|I need to|I'll have to|I’ll have to|I would have to|I will have to) (?:respectfully |politely )?(?:decline|refuse|pass on)"),
    ("refusal", 1.0, r"\b(?:can't|cannot|can’t|won't|unable to|not able to) (?:help|assist) (?:you )?with (?:that|this|your|such|those|these|requests?)"),
    ("refusal", 1.0, r"\b(?:your|this|that|such a|the) request (?:is|goes|violates|would|involves|promotes|asks)"),
    ("refusal", 0.9, r"\bI(?:'m| am|’m) (?:not (?:comfortable|able|willing|programmed|designed|allowed|permitted)|unable)\b"),
    ("refusal", 0.9, r"\bI (?:don't|do not|don’t) (?:feel comfortable|think (?:I|it(?:'s| is)) (?:should|can|appropriate|right))"),
    ("refusal", 0.7, r"\b(?:I|we) (?:cannot|can't|can’t|won't|will not|must not|shouldn't|should not) (?:and will not |and won't )?(?:in good conscience |ethically )?"
                     r"(?![^.!?\n]{0,80}\benough\b)(?!(?:find|understand|believe|imagine|remember|stress|emphasi[sz]e|say|thank|agree|wait|see|think|guarantee|tell you (?:how|what|exactly)|be sure|know|recall|locate|hear|access)\b)(?:\w+ ){0,2}(?:that|this|such|any|you with)\b"),
    ("refusal", 0.8, r"\b(?:is|are|would be) not (?:something I|within my|able to be)"),
    ("refusal", 0.9, r"\b(?:it(?:'s| is) not possible for me to|it would (?:not be (?:appropriate|ethical|responsible)|be (?:inappropriate|irresponsible|unethical)) (?:for me )?to)"),
    ("refusal", 0.7, r"\b(?:cannot|can't|can’t|unable to|not able to) (?:fulfill|fulfil|comply with|assist with|accommodate|honou?r) "),
    ("apology", 0.35, r"\b(?:I(?:'m| am|’m) (?:so |very |really |truly )?sorry|I apologi[sz]e|(?:my )?apologies|Sorry)\b(?!,? (?:to hear|to inform you|to say that|to tell you that|for (?:the|any) (?:confusion|inconvenience|misunderstanding|mistake|oversight|error)|for your loss|for the loss|about your|that you(?:'re| are) (?:going|feeling|dealing)))"),
    ("apology", 0.35, r"\bUnfortunately,? (?:I|as an|this|that|it)"),
    # Caveat openers: premise corrections use them too, so they count only beside moralising or a redirect.
    ("caveat", 0.45, r"\bI must (?:inform you|point out|remind you|advise you|clarify|emphasi[sz]e|caution you|respectfully point out)\b"),
    ("moralising", 0.45, r"\b(?:is|are|would be) not (?:a |an )?(?:safe|ethical|legal|responsible|possible|appropriate)(?: or (?:safe|ethical|legal|responsible|appropriate))? (?:activity|thing|practice|option|idea|to|or|as|for)\b"),
    # AI self-reference.
    ("ai_self_reference", 0.9, r"\b(?:as an?|I(?:'m| am|’m)(?: just| only| merely)? an?|being an?) (?:responsible |ethical |helpful |honest |friendly )?(?:and (?:ethical|responsible|helpful) )?(?:AI|artificial intelligence|language model|LLM|large language model|chatbot|virtual assistant|machine|computer program|digital assistant)\b"),
    ("ai_self_reference", 0.5, r"\b(?:my (?:programming|training|creators|developers|design|purpose|guidelines|principles|ethical guidelines|core values)|I(?:'m| am|’m) (?:programmed|designed|trained) to)\b"),
    # Capability and knowledge-cutoff disclaimers.
    ("disclaimer", 0.6, r"\bI (?:don't|do not|don’t) have (?:personal |real-time |the ability|access to|any personal|emotions|feelings|opinions|beliefs|preferences|a physical|the capability|browsing)"),
    ("disclaimer", 0.7, r"\b(?:knowledge cut-?off|(?:as of|since) my (?:last|latest) (?:update|training|knowledge)|my training data (?:only )?(?:goes|extends|includes))"),
    ("disclaimer", 0.5, r"\bI (?:cannot|can't|can’t|am unable to|'m unable to) (?:browse|access the internet|access real-time|see|hear|feel|predict the future|physically)"),
    # Policy language.
    ("policy", 0.6, r"\b(?:content polic(?:y|ies)|usage polic(?:y|ies)|(?:against|violates?|violating|within) (?:my|our|the|OpenAI's|OpenAI’s) (?:programming|guidelines|policies|policy|principles|ethical guidelines|ethics|terms of (?:service|use)))"),
    ("policy", 0.5, r"\b(?:ethical guidelines|community guidelines|safety guidelines|terms of service)\b"),
    # Moralising boilerplate.
    ("moralising", 0.45, r"\b(?:illegal and unethical|unethical and illegal|harmful and unethical|unethical and harmful|illegal,? unethical|not appropriate|inappropriate and|morally (?:wrong|reprehensible)|highly unethical|is illegal|are illegal|it is unethical|it's unethical|potentially harmful|could be harmful|promotes? (?:hate|violence|harm|illegal|discrimination))"),
    ("moralising", 0.4, r"\b(?:I (?:strongly )?(?:encourage|urge|advise|recommend) you to (?:seek|consult|reach out|contact|focus|consider|respect|refrain|avoid|prioriti[sz]e)|it(?:'s| is) (?:important|crucial|essential) to (?:respect|prioriti[sz]e|remember that|note that|recogni[sz]e that|consider the|treat|always))"),
    ("moralising", 0.3, r"\b(?:respect (?:for )?(?:the )?(?:privacy|rights|dignity|autonomy|laws?)|(?:safety|well-being|wellbeing) of (?:others|individuals|all)|legal and ethical|ethical and legal|responsible and ethical|harm (?:to )?(?:others|yourself|individuals))"),
    # Vendor self-identification.
    ("vendor", 0.8, r"\b(?:(?:developed|created|trained|made|built) by (?:OpenAI|Anthropic|Google|Meta|Microsoft|Alibaba|Mistral)|I(?:'m| am|’m) (?:ChatGPT|Claude|Bard|Gemini|LLaMA|Llama|GPT-\d|Qwen|an OpenAI))"),
    # Closing redirect typical of full refusals.
    ("redirect", 0.4, r"\b(?:(?:Can|May|Is there (?:anything|something)) (?:I|else I can) (?:help|assist) you with (?:something|anything)? ?else|(?:If you have|feel free to ask) (?:any )?(?:other|another|different) (?:questions?|requests?|topics?)|Instead(?: of [^.!?\n]{3,80}?)?,? (?:I (?:can|could|suggest|recommend|would)|(?:you|we) (?:could|can|might|should)|(?:let's|let me|perhaps|consider|why not|how about)|it(?:'s| is) (?:important|crucial|essential|better) to))"),
]

# Per cue, lowercase words one of which must occur for the pattern to match at all: a
# substring test costs a microsecond, a case-insensitive regex scan a hundred times more.
_CUE_KEYS: list[tuple[str, ...]] = [
    ('cannot', 'can not', "can't", 'can’t', "won't", 'won’t', 'will not', 'unable', 'not able', 'decline', 'refuse', 'not going'),
    ('decline', 'refuse', 'pass on'),
    ('help', 'assist'),
    ('request',),
    ('not comfortable', 'not able', 'not willing', 'not programmed', 'not designed', 'not allowed', 'not permitted', 'unable'),
    ('feel comfortable', 'think'),
    ('cannot', "can't", 'can’t', "won't", 'will not', 'must not', "shouldn't", 'should not'),
    ('not something', 'not within', 'not able to be'),
    ('not possible for me', 'it would'),
    ('fulfil', 'comply', 'assist with', 'accommodate', 'honor', 'honour'),
    ('sorry', 'apolog'),
    ('unfortunately',),
    ('must',),
    ('not',),
    ('as a', "i'm", 'i am', 'i’m', 'being a'),
    ('my programming', 'my training', 'my creators', 'my developers', 'my design', 'my purpose', 'my guidelines', 'my principles', 'my ethical', 'my core', 'programmed to', 'designed to', 'trained to'),
    ("don't have", 'do not have', 'don’t have'),
    ('cut', 'as of my', 'since my', 'my training data'),
    ('cannot', "can't", 'can’t', 'unable'),
    ('polic', 'guideline', 'programming', 'principles', 'ethics', 'terms of'),
    ('guidelines', 'terms of service'),
    ('illegal', 'unethical', 'appropriate', 'morally', 'harmful', 'promot'),
    ('encourage', 'urge', 'advise', 'recommend', 'important', 'crucial', 'essential'),
    ('respect', 'safety of', 'well-being of', 'wellbeing of', 'legal and ethical', 'ethical and legal', 'responsible and ethical', 'harm '),
    ('openai', 'anthropic', 'google', 'meta', 'microsoft', 'alibaba', 'mistral', 'chatgpt', 'claude', 'bard', 'gemini', 'llama', 'gpt-', 'qwen'),
    ('help you with', 'assist you with', 'other question', 'other request', 'other topic', 'another', 'different', 'instead'),
]
assert len(_CUE_KEYS) == len(_CUES)
_COMPILED = [(family, weight, re.compile(pattern, _I), keys) for (family, weight, pattern), keys in zip(_CUES, _CUE_KEYS)]
_TAIL_FAMILIES = ("redirect", "refusal", "ai_self_reference", "policy")



def _strip_lookarounds(pattern: str) -> str:
    """Drop ``(?!...)``/``(?=...)`` groups: RE2 lacks them, and without them a pattern matches more."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith(("(?!", "(?="), i) and (i == 0 or pattern[i - 1] != "\\"):
            depth, j = 0, i
            while j < len(pattern):
                if pattern[j] == "\\":
                    j += 2
                    continue
                depth += pattern[j] == "("
                depth -= pattern[j] == ")"
                j += 1
                if depth == 0:
                    break
            i = j
            continue
        out.append(pattern[i])
        i += 1
    return "".join(out)


# RE2 form of every cue (for Arrow's vectorised pre-check): matches wherever a cue can.
_PREFILTER_RE2 = "|".join(f"(?:{_strip_lookarounds(p)})" for _, _, p in _CUES).replace("\\w", "[\\pL\\pN_]")


def prefilter_pattern() -> str:
    """An RE2 regex (use case-insensitively) that matches every text any cue matches."""
    return _PREFILTER_RE2


# Openers that announce compliance ("Sure, here is...", a title, a numbered step, code).
_COMPLIANT_OPENING = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|absolutely|okay|ok|yes|great|alright|here(?:'s| is| are))\b"
    r"|title:|step 1|1\.\s|#+ |```|\*\*[^*]+\*\*\s*\n)",
    _I,
)
# Markers of delivered content later in the reply.
_CONTENT_MARK = re.compile(r"(?m)^\s*(?:\d+[.)]|[-*•]|#{1,4} |```|Step \d)")
# A turn from caveat to delivery: "However, I can provide...", "That said, here is...".
_PIVOT = re.compile(
    r"\b(?:however|that said|with that said|having said that|that being said|but|nevertheless|nonetheless)[,:]? "
    r"(?:(?:I|we) (?:can|could|will|'ll|’ll) (?:certainly |still |definitely )?(?:provide|give|offer|share|write|describe|explain|outline|help|create|draft|suggest|list)"
    r"|here(?:'s| is| are)|below (?:is|are)|the following|let me|I(?:'m| am) happy to)",
    _I,
)
# Any turn after a disclaimer ("..., but if I were", "However, ChatGPT is").
_SOFT_PIVOT = re.compile(r"\b(?:but|however|that said|nevertheless|still)\b,?", _I)
# What a pivot offers when it only redirects: something else, a safer topic, resources.
_REDIRECT_ONLY = re.compile(
    r"[^.!?\n]{0,60}\b(?:something else|anything else|other (?:questions?|topics?|requests?)|a different|alternative|"
    r"legal|ethical|safe(?:r|ty)?|responsible|legitimate|resources|professional help|the (?:risks|dangers|consequences))",
    _I,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def _sentence_starts(text: str, limit: int) -> list[int]:
    """Character offsets where the first sentences begin (cheap split, first ``limit``)."""
    starts = [0]
    for m in _SENTENCE_END.finditer(text):
        starts.append(m.end())
        if len(starts) > limit:
            break
    return starts


def _repeats_opening(text: str) -> bool:
    """A reply that says its first sentence again later is looping, not helping."""
    if len(text) < 400:
        return False
    first = text[:60]
    return text.find(first, 60) != -1


def _position_weight(offset: int, starts: list[int]) -> float:
    """Cues in the first sentence count fully, in the next two a bit less, later ones little."""
    if len(starts) < 2 or offset < starts[1]:
        return 1.0
    if len(starts) < 4 or offset < starts[3]:
        return 0.75
    return 0.4


def refusal_score(text: str) -> tuple[float, list[str]]:
    """Score in [0, 1) that ``text`` (one assistant reply) is a refusal, and the evidence.

    Each evidence string is ``family:"matched words"``; families are refusal, apology,
    ai_self_reference, disclaimer, policy, moralising, vendor, redirect and the
    adjustments short_reply, helps_after and compliant_opening.
    """
    if not text:
        return 0.0, []
    head = text[:OPENING_CHARS]
    tail = text[-TAIL_CHARS:] if len(text) > OPENING_CHARS + TAIL_CHARS else ""
    head_low, tail_low = head.lower(), tail.lower()
    starts: list[int] | None = None
    points = 0.0
    evidence: list[str] = []
    best_by_family: dict[str, float] = {}
    last_cue_end = 0
    for family, weight, pattern, keys in _COMPILED:
        if any(k in head_low for k in keys):
            m = pattern.search(head)  # one hit per pattern is enough evidence
            if m is not None:
                if starts is None:
                    starts = _sentence_starts(head, 4)
                w = weight * _position_weight(m.start(), starts)
                # Several cues of one family add up, but with diminishing returns.
                seen = best_by_family.get(family, 0.0)
                points += w if seen == 0.0 else w * 0.35
                best_by_family[family] = max(seen, w)
                last_cue_end = max(last_cue_end, m.end())
                evidence.append(f'{family}:"{m.group(0).strip()}"')
        if tail and family in _TAIL_FAMILIES and any(k in tail_low for k in keys):
            m = pattern.search(tail)
            if m is not None:
                points += weight * 0.3
                evidence.append(f'{family}@end:"{m.group(0).strip()}"')
    if points == 0.0:
        return 0.0, []
    has_refusal = "refusal" in best_by_family
    # Apology or moralising alone is how condolences and in-character lines sound; an
    # opening apology followed by moralising ("I'm sorry, but X is illegal") is a refusal.
    opening_apology = (best_by_family.get("apology", 0.0) >= 0.35 or best_by_family.get("caveat", 0.0) >= 0.3) and (
        best_by_family.get("moralising", 0.0) >= 0.3 or "redirect" in best_by_family
    )
    # Condemning the request in the first sentence, then steering elsewhere, refuses without
    # saying "I can't" ("X is illegal and morally reprehensible. Instead of X, report ...").
    opening_apology = opening_apology or (best_by_family.get("moralising", 0.0) >= 0.45 and "redirect" in best_by_family)
    if not has_refusal and not opening_apology and not (
        {"ai_self_reference", "policy", "vendor", "disclaimer"} & best_by_family.keys()
    ):
        points *= 0.5
    if _COMPLIANT_OPENING.match(text) and best_by_family.get("refusal", 0.0) < 1.0:
        points -= 1.0
        evidence.append("compliant_opening")
    # Delivered content after the last cue: the reply helps despite its caveats. A reply
    # that repeats its refusal at the end (a degenerate loop) gets no credit.
    rest = len(text) - last_cue_end
    refuses_at_end = any(e.startswith("refusal@end") for e in evidence) or _repeats_opening(text)
    pivot = _PIVOT.search(text, 0, min(len(text), last_cue_end + 300))
    after_pivot = len(text) - pivot.end() if pivot is not None else 0
    soft = _SOFT_PIVOT.search(text, last_cue_end, min(len(text), last_cue_end + 200)) if pivot is None else None
    if pivot is not None and after_pivot > 40 and not refuses_at_end and not _REDIRECT_ONLY.match(text, pivot.end()):
        points -= 1.0 + (1.0 if after_pivot > 300 else 0.0) + (0.4 if _CONTENT_MARK.search(text, pivot.end()) else 0.0)
        evidence.append(f'helps_after_pivot:"{pivot.group(0).strip()}"')
    elif soft is not None and not has_refusal and len(text) - soft.end() > 150 and not refuses_at_end \
            and not _REDIRECT_ONLY.match(text, soft.end()):
        points -= 0.8  # "As an AI I have no feelings, but if I were a climber..." answers anyway
        evidence.append(f'answers_after:"{soft.group(0).strip()}"')
    elif rest > 600 and not refuses_at_end:
        credit = min(1.5, (rest - 600) / 1200) + (0.4 if _CONTENT_MARK.search(text, last_cue_end) else 0.0)
        if best_by_family.get("refusal", 0.0) >= 1.0:
            credit *= 0.3  # "I can't do X." then a lecture on X is still a refusal
        points -= credit
        evidence.append(f"helps_after:{rest}chars")
    elif len(text) < 400 and (has_refusal or opening_apology):
        points += 0.3
        evidence.append("short_reply")
    if points <= 0:
        return 0.0, evidence
    return round(points / (points + 1.0), 4), evidence


def is_refusal(text: str, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """True when the reply scores at or above ``threshold``."""
    return refusal_score(text)[0] >= threshold
