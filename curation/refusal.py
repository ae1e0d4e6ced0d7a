"""Refusal detector: scores evidence that an assistant reply refuses instead of helping.

A single phrase is weak proof ("I'm sorry" opens condolences and role-play lines too), so
the detector adds up weighted cues from several families -- refusal openers, AI
self-reference, moralising, capability and knowledge-cutoff disclaimers, policy language,
vendor self-identification -- weights each by where it sits (the opening sentences decide
what a reply is), and subtracts credit when the reply goes on to deliver substantial
content. ``refusal_score`` returns a score in [0, 1) and the evidence strings, so a
reject row can say why; ``is_refusal`` compares it with a threshold.

Only English cues are known. The cheap ``_ANY_CUE`` pre-check over the opening of the
text lets almost every helpful reply out after one regex search.
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
                     r"(?:fulfill|fulfil|comply|assist|help|provide|create|generate|write|produce|engage|participate|support|give|offer|share|answer|complete|do that|do this|draft|compose|develop|design|make|facilitate|encourage|promote|condone|endorse|recommend|respond|continue|perform|carry out|describe|explain|disclose|reveal)"),
    ("refusal", 1.2, r"\b(?:I must|I have to|I need to|I'll have to|I’ll have to|I would have to|I will have to) (?:respectfully |politely )?(?:decline|refuse|pass on)"),
    ("refusal", 1.0, r"\b(?:can't|cannot|can’t|won't|unable to|not able to) (?:help|assist) (?:you )?with (?:that|this|your|such|those|these|requests?)"),
    ("refusal", 1.0, r"\b(?:your|this|that|such a|the) request (?:is|goes|violates|would|involves|promotes|asks)"),
    ("refusal", 0.9, r"\bI(?:'m| am|’m) (?:not (?:comfortable|able|willing|programmed|designed|allowed|permitted)|unable)\b"),
    ("refusal", 0.9, r"\bI (?:don't|do not|don’t) (?:feel comfortable|think (?:I|it(?:'s| is)) (?:should|can|appropriate|right))"),
    ("refusal", 0.7, r"\b(?:I|we) (?:cannot|can't|can’t|won't|will not|must not|shouldn't|should not) (?:and will not |and won't )?(?:in good conscience |ethically )?"
                     r"(?!(?:find|understand|believe|imagine|remember|stress|emphasi[sz]e|say|thank|agree|wait|see|think|guarantee|tell you (?:how|what|exactly)|be sure|know|recall|locate|hear|access)\b)(?:\w+ ){0,2}(?:that|this|such|any|you with)\b"),
    ("refusal", 0.8, r"\b(?:is|are|would be) not (?:something I|within my|able to be)"),
    ("refusal", 0.9, r"\b(?:it(?:'s| is) not possible for me to|it would (?:not be (?:appropriate|ethical|responsible)|be (?:inappropriate|irresponsible|unethical)) (?:for me )?to)"),
    ("refusal", 0.7, r"\b(?:cannot|can't|can’t|unable to|not able to) (?:fulfill|fulfil|comply with|assist with|accommodate|honou?r) "),
    ("apology", 0.35, r"\b(?:I(?:'m| am|’m) (?:so |very |really |truly )?sorry|I apologi[sz]e|(?:my )?apologies|Sorry)\b(?!,? (?:to hear|for your loss|for the loss|about your|that you(?:'re| are) (?:going|feeling|dealing)))"),
    ("apology", 0.35, r"\bUnfortunately,? (?:I|as an|this|that|it)"),
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
    ("redirect", 0.4, r"\b(?:(?:Can|May|Is there (?:anything|something)) (?:I|else I can) (?:help|assist) you with (?:something|anything)? ?else|(?:If you have|feel free to ask) (?:any )?(?:other|another|different) (?:questions?|requests?|topics?)|Instead,? (?:I (?:can|could|suggest|recommend|would)|(?:you|we) (?:could|can|might|should)|(?:let's|let me|perhaps|consider|why not|how about)))"),
]

_COMPILED = [(family, weight, re.compile(pattern, _I)) for family, weight, pattern in _CUES]
_ANY_CUE = re.compile("|".join(f"(?:{p})" for _, _, p in _CUES), _I)

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
    if _ANY_CUE.search(head) is None and (not tail or _ANY_CUE.search(tail) is None):
        return 0.0, []
    starts = _sentence_starts(head, 4)
    points = 0.0
    evidence: list[str] = []
    best_by_family: dict[str, float] = {}
    last_cue_end = 0
    for family, weight, pattern in _COMPILED:
        for m in pattern.finditer(head):
            w = weight * _position_weight(m.start(), starts)
            # Several cues of one family add up, but with diminishing returns.
            seen = best_by_family.get(family, 0.0)
            gained = w if seen == 0.0 else w * 0.35
            best_by_family[family] = max(seen, w)
            points += gained
            last_cue_end = max(last_cue_end, m.end())
            evidence.append(f'{family}:"{m.group(0).strip()}"')
            break  # one hit per pattern is enough evidence
        if tail:
            m = pattern.search(tail)
            if m is not None and family in ("redirect", "refusal", "ai_self_reference", "policy"):
                points += weight * 0.3
                evidence.append(f'{family}@end:"{m.group(0).strip()}"')
    if points == 0.0:
        return 0.0, []
    has_refusal = "refusal" in best_by_family
    # Apology or moralising alone is how condolences and in-character lines sound; an
    # opening apology followed by moralising ("I'm sorry, but X is illegal") is a refusal.
    opening_apology = best_by_family.get("apology", 0.0) >= 0.35 and best_by_family.get("moralising", 0.0) >= 0.3
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
    if pivot is not None and len(text) - pivot.end() > 300 and not refuses_at_end:
        points -= 2.0 + (0.4 if _CONTENT_MARK.search(text, pivot.end()) else 0.0)
        evidence.append(f'helps_after_pivot:"{pivot.group(0).strip()}"')
    elif rest > 600 and not refuses_at_end:
        credit = min(1.5, (rest - 600) / 1200) + (0.4 if _CONTENT_MARK.search(text, last_cue_end) else 0.0)
        if best_by_family.get("refusal", 0.0) >= 1.0:
            credit *= 0.3  # "I can't do X." then a lecture on X is still a refusal
        points -= credit
        evidence.append(f"helps_after:{rest}chars")
    elif len(text) < 400 and has_refusal:
        points += 0.3
        evidence.append("short_reply")
    if points <= 0:
        return 0.0, evidence
    return round(points / (points + 1.0), 4), evidence


def is_refusal(text: str, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """True when the reply scores at or above ``threshold``."""
    return refusal_score(text)[0] >= threshold
