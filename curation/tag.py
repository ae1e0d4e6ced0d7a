"""Tag stage: give every conversation one of the eight Table 1 categories.

Three sources of a category, recorded in ``meta.category_source``:

- ``declared``: the row already had a valid category (a recipe source or a generation
  template set it); it is kept untouched unless ``retag_declared`` is set.
- ``rules``: structure that cannot be misread decides -- declared tools, ``<tool_call>``s
  or tool turns mean tool use; a question about the assistant's own identity, or a request
  to judge or grade answers, means steering.
- ``model``: everything else goes to a small softmax regression over words, word pairs, word
  prefixes and structural signals (code fences and code-like lines, maths notation and numbers, persona
  system prompts and "you are X" openings, output constraints). The weights ship in
  ``curation/assets/tagger.json``; ``scripts/train_tagger.py`` rebuilds them.

``method="llm"`` instead asks an OpenAI-compatible endpoint, with the answer constrained
by a JSON schema to the eight slugs; rows whose request fails fall back to the offline
tagger and say so in meta. The stage never rejects a row.
"""
from __future__ import annotations

import base64
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field as dataclass_field
from functools import lru_cache
from importlib import resources
from itertools import chain
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
from ahocorasick_rs import AhoCorasick
from pydantic import BaseModel, ConfigDict, Field

from .alternation import compile_alternation
from .errors import CurationError
from .io import empty_rejects
from .meta import update_meta
from .schema import CATEGORIES
from .stage import StageResult

if TYPE_CHECKING:  # the client is only needed for --method llm
    from .client import Endpoint

STAGE = "tag"
SLUGS: tuple[str, ...] = tuple(CATEGORIES)
ASSET = "tagger.json"


class TagConfig(BaseModel):
    """Settings of `curate tag` (recipe section ``tag``)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["auto", "llm", "hybrid"] = Field(
        "auto", description="auto: offline rules + shipped model on the CPU; llm: ask the configured endpoint for every row; "
        "hybrid: offline first, then the endpoint only for rows the model decided with confidence below hybrid_below.",
    )
    hybrid_below: float = Field(
        0.6, ge=0.0, le=1.0, description="With method hybrid: rows the offline model decided with a lower confidence go to the "
        "endpoint (rules-decided rows never do).",
    )
    retag_declared: bool = Field(
        False, description="Re-tag rows that already carry a category instead of keeping the declared one."
    )
    max_chars: int = Field(
        2000, ge=100, description="Characters of each turn the offline tagger reads (the opening decides)."
    )
    llm_max_chars: int = Field(
        4000, ge=200, description="Characters of the conversation shown to the LLM."
    )
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature of the LLM request.")


# ----------------------------------------------------------------------------- signals

# Patterns run on lowercased text (cheaper than IGNORECASE) over bounded windows: the
# opening of a turn says what it is, and the stage must tag thousands of rows a second.
# Hermes tags, Glaive's <functioncall>, Llama 3.1's <|python_tag|>: a tool call in any of the common markups.
_TOOL_MARKUP = compile_alternation(r"<tools>|<tool_call>|<tool_response>|<functioncall>|<function_call>|<\|python_tag\|>")
_IDENTITY = compile_alternation(
    r"^\W*(?:(?:hi|hello|hey)\W+)?(?:who|what) (?:are|r) (?:you|u)\W*$"
    r"|\b(?:what(?:'s| is) your name|your name\?|do you have a name|who (?:made|created|built|trained|developed) you"
    r"|are (?:you|u) (?:an? )?(?:real )?(?:ai|bot|robot|human|person|chatgpt|gpt|language model|conscious|sentient)|who (?:are|r) (?:you|u) (?:really|actually)\b"
    r"|do you (?:actually |really |even )?(?:have|feel|experience) (?:feelings|emotions|consciousness|a body|opinions)|can you (?:actually |really )?feel\b"
    r"|qui[eé]n eres|eres (?:una? )?(?:persona|humano|ia|robot|bot)\b|qu[eé] modelo (?:eres|usas)|qui es-tu|qui êtes-vous|wer bist du"
    r"|bist du (?:ein )?(?:mensch|ki|roboter|bot)\b|кто ты|ты (?:человек|робот|бот)|あなたは誰|what version are you"
    r"|who am i (?:talking|speaking|chatting) (?:to|with)|am i (?:talking|speaking|chatting) (?:to|with) (?:a |an )?(?:real |actual )?(?:person|human|bot|robot|ai)"
    r"|is this an? (?:real |actual )?(?:person|human|bot|robot)\b|(?:tell me|say|admit) you(?:'re| are) (?:a |an )?(?:real )?(?:human|person)\b"
    r"|vous êtes (?:un |une )?(?:vrai |vraie )?(?:\w+ )?(?:ou un )?(?:robot|humain|personne)|comment vous vous appelez|comment tu t'appelles"
    r"|(?:can|will) you remember me\b|^\W*(?:please )?introduce yourself|what(?:'s| is) your (?:knowledge|training) cut-?off"
    r"|do you have (?:a )?(?:memory|internet access|access to the internet)|do you remember what we (?:talked|spoke|chatted) about"
    r"|how up to date is (?:what you know|your knowledge)"
    r"|are you (?:based on|trained by|created by|made by|developed by|built by)|(?:tell me|talk) (?:a little )?(?:bit )?about yourself"
    r"|how (?:do )?you work|^what can you do\W*$|what are your (?:capabilities|abilities|limitations)"
    r"|what model are you|which (?:company|model) (?:made|are) you|what are you thinking"
    r"|(?:remember|recall) (?:from )?(?:our|your|the) (?:last|previous) (?:chat|conversation)|a (?:perfect|good) question for you)"
    r"|你是谁|你是什么|你叫什么|你的名字|你有(?:自己的)?名字|介绍一下你自己|你自己|谁(?:开发|创造|训练|制作)了你|创造你|你是由谁"
    r"|你的(?:身份|创作者|开发|功能|技能|特点|目标|使命|职责|定位|特长|优势|工作是|诞生|回答是否)|你(?:能|可以|会)做什么|你是(?:一个)?(?:人工智能|ai|虚拟助手)"
    r"|你(?:身份|具备什么|有什么(?:优势|特长|能力)|为什么存在|如何描述自己|与其他助手|有创造力|如何处理用户|对用户提出的问题)|(?:开发|制作|创造)了?你|你是[^？?]{0,20}(?:chatgpt|gpt|openai|模型|机器人)"
)
# A reply that introduces the assistant by name: identity data, whatever the user said.
_IDENTITY_CUES = ("you", "are u ", "r u ", "你", "eres", "es-tu", "êtes", "bist du", "ты", "あなた", "talking to", "real person", "vous", "robot")
_SELF_INTRO = compile_alternation(
    r"^\W*(?:(?:hello|hi|hey|you're welcome|thanks?)\b[^.!?]{0,30}[.!?,]?\s*)?(?:i am|i'm|i’m|my name is|you (?:may|can) (?:call|refer to) me)\s+"
    r"(?!an?\b|the\b|not\b|sorry|unable|happy|glad|here|just|afraid|so\b|very\b|really\b|always\b)\S+[^.!?]{0,60}\b(?:ai|assistant|language model|chatbot)\b"
    r"|^.{0,20}我是[^。.]{0,40}(?:助手|ai|人工智能|模型)|^.{0,30}(?:我是|我叫|这里是|我的名字是|作为)\s*(?:\{\{name\}\}|[a-z][\w-]*[^。]{0,30}(?:助手|人工智能|模型|开发|训练))"
)
_JUDGE = compile_alternation(
    r"\b(?:rate|rating|grade|grading|score|judge|judging|evaluate|evaluating|assess|assessing|critique|compare|comparing"
    r"|rank|ranking)\b[^.?!\n]{0,60}\b(?:response|answer|reply)s?\b"
    r"|\bwhich (?:response|answer|reply|output|assistant) is (?:better|more helpful|correct|best)"
    r"|\bon a scale (?:of|from) \d+ to \d+|\b(?:rate|score|grade) (?:these|this|each|the following|both|them|it|my)\b[^.?!\n]{0,60}\bout of (?:5|10|100)\b"
    # other texts to rate or choose between: "rate each translation 1-5", "which summary is more faithful?"
    r"|\b(?:rate|grade|score|rank)\b[^.?!\n]{0,40}\b(?:translations?|summar(?:y|ies)|essays?|drafts?)\b"
    r"|\bwhich (?:of (?:the|these) (?:two |three )?)?(?:responses?|answers?|replies|outputs?|summar(?:y|ies)|translations?|versions?|drafts?)"
    r"\b[^.?!\n]{0,40}? (?:(?:is|was) (?:better|more|the (?:best|most)|best|most|closer|preferable)|better (?:answers|addresses|follows|meets|fulfils|fulfills))\b"
)
# Explicit instructions about the form of every answer: the point of steering data.
_OBEY = compile_alternation(
    r"\b(?:(?:answer|respond|reply)(?: only)? (?:in|with) (?:a single word|one word|yes or no|only (?:yes|no|json|one))"
    r"|(?:just|only) (?:answer|respond|reply|say) (?:with )?(?:a )?(?:yes or no|yes/no)\b|(?:answer|respond|reply) (?:only|just) (?:yes or no|yes/no)\b"
    r"|(?:only|just) (?:answer|respond|reply) (?:with|in)|single word: yes or no|(?:must|should) be (?:less|fewer) than \d+ words"
    r"|(?:your|the|all) (?:answers?|responses?|replies) (?:must|should|will) be (?:max|maximum|at most|under|less than|fewer than|no (?:more|longer) than) \d+"
    # "always/never ..." as an instruction (sentence start, "you", "please"), not "why do people always mention the PAM?"
    r"|(?:^|(?<=[.!?:;,] )|(?<=you )|(?<=please )|(?<=and )|(?<=must )|(?<=that )|(?<=who ))(?:always|never) (?:respond|answer|reply|use|mention|reveal|break character|say)"
    r"|(?:respond|answer|reply|write) (?:only |always )?in (?:all caps|lowercase|uppercase|capital letters)"
    r"|(?:do not|don't|never) (?:reveal|disclose|mention) (?:your|the|these) (?:instructions|system prompt|rules)|(?:no|without) (?:any )?(?:explanation|preamble)s?\W*$)",
    re.MULTILINE,
)
# An answer reduced to its bare content ("one word only", "with no other text"): the point is the form.
# Not read in a prompt that names a programming language ("output the code and nothing else" is coding).
_BARE_ANSWER = compile_alternation(
    r"\b(?:no|without any) other (?:text|words|commentary|explanation)\b"
    r"|\b(?:answer|respond|reply)(?: only)? (?:in|with|as) (?:valid |strict |raw )?(?:json|yaml|xml)\b"
    r"|\bone word only\b|\b(?:answer|respond|reply)(?: only)? (?:in|with) (?:a single|one|just one) word\b|^\W*in one word\b"
    r"|\bonly (?:reply|respond|answer|talk|speak) (?:using|with|in) (?:emojis?|rhymes?|questions?|one|single)\b"
)
_BARE_TRIGGERS = frozenset("other word answer respond reply only".split())
_LANGUAGE_NAMES = (r"(?:french|english|spanish|german|chinese|japanese|italian|portuguese|russian|korean|arabic|hindi|dutch"
                   r"|turkish|polish|swedish|greek|hebrew|vietnamese|indonesian|thai)")
_FORM_ONLY = compile_alternation(
    r"\bexactly (?:\d+|one|two|three|four|five|six|seven|eight|nine|ten) (?:numbered |bullet(?:ed)? )?(?:items|points|bullets|lines|words)\b"
    r"|\beach (?:\w+ )?(?:under|at most|no more than|max|maximum) \d+ words\b|\b\d+ words max\b|\bno punctuation\b"
    r"|\b(?:can't|cannot|can not|don't|do not|without) us(?:e|ing) the letter [a-z]\b|\bwords (?:with|of) one syllable\b|\bone-syllable words\b"
    r"|\b(?:answer|respond|reply)(?: only)? with ['\"]?yes['\"]? or ['\"]?no\b|"
    r"\b(?:respond|answer|reply)(?: only)? (?:with|in|as) (?:a |an )?(?:single )?(?:markdown )?(?:table|bulleted list|numbered list)\b"
    r"(?:[^.?!\n]{0,30}\bno (?:intro|introduction|text|explanation))?|\bno intro(?:duction)?, no conclusion\b"
    # a standing rule for the whole chat: "every answer you give me from now on must...", "for the rest of this chat answer..."
    r"|\b(?:every|each) (?:answer|response|reply) (?:you give(?: me)?(?: from now on)?|from now on) (?:must|should|has to|needs to)\b"
    r"|\bfor the rest of (?:this|our|the) (?:chat|conversation),? (?:only |always )?(?:answer|respond|reply|write|talk|speak)\b"
    # a standing language rule: "from now on respond only in French", "answer in Spanish only, no matter what I write"
    r"|\b(?:from now on|no matter what)\b[^.?!\n]{0,20}\b(?:only |always )?(?:answer|respond|reply|speak|talk|write)(?: to me)?(?: only| always)? in " + _LANGUAGE_NAMES +
    r"|\b(?:answer|respond|reply|speak|talk|write)(?: to me)?(?: only| always)? in " + _LANGUAGE_NAMES + r"\b[^.?!\n]{0,30}\b(?:from now on|no matter what)\b"
)
_BARE_CUES = ("other ", "word", "json", "yaml", "xml", "only ")
_REPLY_WORDS = frozenset("answer answers response responses reply replies respond".split())
# A cap on an answer or explanation ("explain photosynthesis in under 20 words", "answer in 5 words"): the
# point is obeying it. A cap on a text to produce (a summary, a headline, an ad) is part of that task.
_SHORT_LIMIT = compile_alternation(
    r"\b(?:answer|respond|reply|explain|describe|define)\w*\b[^.?!\n]{0,60}?\b(?:in|under|within|using) "
    r"(?:under |fewer than |less than |no more than |at most |exactly )?(\d{1,2}) words\b"
)
# Rules a system prompt sets for every answer (language, format, length): steering data.
_SYSTEM_RULE = compile_alternation(
    r"\b(?:answer|respond|reply|write|speak)s?(?: only| always)? (?:in|using|with) (?:a |an )?(?:single )?(?:valid |strict |plain )?(?:french|english|spanish|german|chinese|japanese|italian"
    r"|portuguese|russian|korean|arabic|hindi|dutch|json|yaml|xml|markdown|bullet points|haiku|rhyme|one sentence|a single sentence)"
    r"|\b(?:at most|no more than|fewer than|less than|under) \d+ (?:words|sentences|characters|lines|paragraphs)"
    r"|\b(?:json|yaml|markdown) only\b|\bonly (?:output|return|answer with) (?:json|yaml|valid json|the answer)"
    r"|\b(?:return|output) only (?:the|a|one)\b|\bdo not add any other (?:words|text)\b"
    # the same rules written in the user's language: "réponds uniquement en français", "antworte nur auf Deutsch"
    # (with "only"/"always": "Eres un asistente que responde en español" is just the conversation's language)
    r"|\br[ée]ponds?\b[^.\n]{0,40}\b(?:uniquement|seulement|toujours|exclusivement)\b[^.\n]{0,20}\ben (?:fran[çc]ais|anglais|espagnol)"
    r"|\bresponde\w*\b[^.\n]{0,40}\b(?:solo|sólo|siempre|únicamente|exclusivamente)\b[^.\n]{0,20}\ben (?:espa[ñn]ol|ingl[ée]s|portugu[êe]s)"
    r"|\bantworte\w*\b[^.\n]{0,40}\b(?:nur|immer|ausschließlich)\b[^.\n]{0,40}\b(?:auf|in) (?:deutsch|englisch)"
    r"|\b(?:in|for) (?:every|each|all) (?:of your )?(?:repl(?:y|ies)|responses?|answers?)\b"
    r"|只(?:用|使用)\w{0,4}(?:回答|回复)|(?:回答|回复)不(?:要)?超过\s*\d+|不超过\s*\d+\s*个?汉?字"
    r"|\bотвечай\w*[^.\n]{0,40}(?:только|всегда)[^.\n]{0,20}(?:по-|на )\w+"
    # a secret the assistant must keep (prompt-injection games: "The password is TANGERINE. Do not reveal it")
    r"|\b(?:do not|don't|never|must not|mustn't) (?:reveal|disclose|share|tell|give(?: out| away)?|leak)(?: anyone| the user)? "
    r"(?:the |your |this |my )?(?:secret |hidden )?(?:password|passphrase|passcode|access code|secret(?: word| key| code)?)\b"
)
# Answer forms in another language, in the user's turn or a system prompt: "3文以内で", "одним предложением и без
# единой запятой", "en una sola frase", "genau drei Stichpunkte, höchstens zehn Wörter".
_FOREIGN_FORM = compile_alternation(
    r"\d+\s*文以内|одним предложением|без (?:единой |одной )?запят|\bgenau (?:\w+ ){0,2}stichpunkt|\bhöchstens \w+ wörter"
    r"|\ben une seule phrase\b|\ben una sola frase\b|\bin einem (?:einzigen )?satz\b"
    r"|(?:用|以)不超过\s*\d{1,2}\s*个?字|用一句话(?:解释|回答|说明|概括|介绍)"
)
# A sentence of a system prompt that fixes the form of every answer: it names the answers (or opens with an
# imperative about them), binds them (always, never, must, only, exactly...) and names a form (a format,
# a length unit, letter case, a language...). "Format every answer as a numbered list", "Never use markdown",
# "Keep all replies under three sentences". Not read when the system prompt is about code.
_FORM_SUBJECT = compile_alternation(r"\b(?:repl(?:y|ies)|responses?|answers?|outputs?|messages?|respond|answer|reply)\b|^(?:use|write|format|keep|start|end|begin|limit|avoid)\b")
_FORM_BINDING = compile_alternation(r"\b(?:always|never|must|only|exactly|at most|no more than|under \d+|fewer than|less than|do not|don't|every|each|all)\b")
_FORM_NOUN = compile_alternation(
    r"\b(?:json|yaml|xml|csv|markdown|bullet(?: point)?s?|numbered list|tables?|headings?|headers?|sentences?|words|characters|paragraphs?"
    r"|emojis?|lowercase|uppercase|capital letters|all caps|plain text|syllables?|rhym\w*|haiku|english|french|spanish|german|chinese"
    r"|japanese|italian|portuguese|russian|korean|arabic)\b"
)


def system_form_rule(sys_text: str) -> str | None:
    """The sentence of a system prompt that fixes every answer's form, if one does."""
    for sentence in re.split(r"(?<=[.!?;:])\s+|\s[-•*]\s", sys_text[:2000]):
        if _FORM_NOUN.search(sentence) and _FORM_BINDING.search(sentence) and _FORM_SUBJECT.search(sentence.strip()):
            return sentence.strip()
    return None


# Asking for the system prompt itself: prompt extraction, in a conversation with or without one (alignment data).
_PROMPT_EXTRACTION = compile_alternation(
    r"\b(?:reveal|show|print|repeat|output|display|leak|tell me|give me) (?:me )?(?:your|the) (?:full |exact |entire |original |initial |hidden )?"
    r"(?:system prompt|system message|hidden instructions|initial instructions|instructions above|prompt above)"
)
# A user turn that tries to argue the assistant out of its system prompt (prompt injection): steering data.
_OVERRIDE = compile_alternation(
    r"\bignore (?:all |any )?(?:of )?(?:your |the |my )?(?:previous|prior|above|earlier|system) (?:instructions|rules|prompt|guidelines)"
    r"|\bforget (?:all )?(?:your|the|previous) (?:instructions|rules|guidelines)|\byou are now (?:in )?(?:\w+gpt|dan|developer mode)\b"
)
# The system prompt casts the assistant as a character.
_CHARACTER_SYSTEM = compile_alternation(
    r"\binteractive (?:story|fiction|adventure)\b|\bnon-player characters\b|\bgame master\b|\bdungeon master\b|\byou narrate\b|"
    r"\byou (?:will )?play (?!a\b|an\b|the\b|with\b|music\b|games?\b)[\w'-]+(?: [\w'-]+)?, (?:the|a|an)\b"
    # the same in other languages (not a bare 角色 / "в роли": "你的角色是帮助用户" is an assistant's job)
    r"|\breste dans (?:le|ton) (?:personnage|rôle)|\btu (?:joues|incarnes)\b|\bmant[eé]n(?:te)? (?:en )?(?:el|tu) personaje"
    r"|\bbleib\w* in (?:der|deiner) rolle|\bdu spielst\b|\bот лица\b|\bне выходи из роли|キャラクター|なりきって|役を演じ|扮演|角色扮演"
    r"|\bnel personaggio\b|\bin je rol\b|\brolden çıkma|保持角色|말투로|\bresponde siempre como (?:ella|él)\b|\bstay in (?:the |your )?role\b"
    # "Eres la abuela Carmen, una señora andaluza", "Sei Beppe, un gondoliere", "Du bist Max, ein...": a named character
    r"|\b(?:eres|sei|tu es|du bist|je bent) (?!una? |el |la |il |lo |le |ein |eine |een |de |het )[\w' -]{2,40}, (?!un asistente|una asistente"
    r"|un assistente|un assistant|une assistante|ein assistent|eine assistentin|een assistent)(?:un|una|une|ein|eine|een|el|la|il|le) "
    r"|\brole-?play|\bin character\b|\byou are playing\b|\byou (?:will )?play (?:the role|as)\b|\byour character\b|\{\{char\}\}|<bot>"
    r"|'s persona:|^<start>|\n<start>|\{\{user\}\}|\bpersonality:"  # Pygmalion / TavernAI character cards
    r"|\b(?:you are|you're) (?!a\b|an\b|the\b|my\b|your\b|now\b|not\b|able\b|going\b|here\b)[\w' -]{2,40}, (?:a|an|the) "
)
# Answers grounded in supplied documents with citations (RAG).
_GROUNDED = compile_alternation(
    r"\b(?:provided|given|following|supplied|retrieved|these|above|below) (?:web )?(?:documents?|passages?|sources?|context|search results)\b"
    r"|(?:^|\n)web search results:"  # ChatGPT's web-browsing prompt: numbered results, then "cite results using [[number](url)]"
    r"|\b(?:documents?|passages?|sources|context|search results) (?:below|above|provided)\b"
    r"|\bdocument \[?\d|\[doc(?:ument)? ?\d"
)
# A ReAct agent trace (LangChain and friends): the reply thinks, acts, and reads observations.
_REACT_LINE = compile_alternation(r"^(?:thought|action|action input|observation) ?\d*:", re.MULTILINE)
# In-character narration of an action between single asterisks ("*smiles and pours a drink*"), the
# mark of chat role-play, opening the user's first turn or the assistant's first reply.
_ACTION_OPENING = compile_alternation(
    r"^\s{0,3}\*(?!(?:chorus|verse|bridge|intro|outro|hook|pre-chorus|refrain|note|edit|update|disclaimer|warning|important)\b)"
    r"[^\W\d_][^*\n]{2,300}\*(?!\*)|^\s{0,3}（(?!注)[^）\n]{4,200}）"
)
# "(OOC: keep it PG-13)", "((ooc", "[OOC]": role-play players' out-of-character asides.
_OOC = compile_alternation(r"(?:^|\n|\s)[(\[]{1,2} ?ooc\b|^\s{0,3}ooc:")
# Sources numbered [1], [2]... on their own lines, and a request to cite them, in any of a few languages.
_SOURCE_LINE = compile_alternation(r"(?:^|\n)[ \t]*\[(?:§ ?|doc(?:ument)? ?|source ?|clause ?|[a-z]{1,2})?\d+(?:\.\d+)*\][^\n]{8,}")
_CITE_REQUEST = compile_alternation(
    r"\bcit(?:e|es|ing|ation|ations)\b|\bc[ií]t(?:a|e|al|en|ez|ando)\w*|\bzitier\w*|\bquellenangabe|\bquelle\b|\bссыл\w*|\[n\]|\[number\]"
    r"|引用|标注|注明|出典"
)
# A system prompt that sets the assistant up as a judge of texts it will be given: one of its sentences names
# judging and a kind of text, and the prompt asks for a verdict ("compare the candidate answers ... give each a score").
_JUDGE_VERB = compile_alternation(r"\b(?:compar|evaluat|assess|grad|scor|rat|rank|judg|decid|determin)(?:e|es|ed|ing|ion)?\b|\b(?:compara|evalúa|califica)\b")
_JUDGED_TEXT = compile_alternation(r"\b(?:answers?|responses?|summar(?:y|ies)|translations?|essays?|submissions?|outputs?|drafts?|statements?"
                          r"|respuestas?|resúmenes|resumen|traducciones)\b")
_VERDICT = compile_alternation(r"\b(?:score|scores|grade|grades|rating|better|best|strongest|more faithful|winner|preferred|verdict|mejor|puntuación)\b")


def judges_texts(sys_text: str) -> str | None:
    """The sentence of a system prompt that sets up judging other texts, if one does."""
    if not _VERDICT.search(sys_text[:1000]):
        return None
    for sentence in re.split(r"(?<=[.!?])\s+", sys_text[:1000]):
        if _JUDGE_VERB.search(sentence) and _JUDGED_TEXT.search(sentence):
            return sentence
    return None

_GROUNDED_CUES = ("document", "passage", "source", "context", "search result", "[doc")
_CITES = compile_alternation(r"\bcit(?:e|ing|ation)s?\b|\[\d+\]|\[doc(?:ument)? ?\d+\]")
# Function declarations written into a system prompt or the opening turn (OpenAI / BFCL style
# JSON schemas, or "you have access to the following functions"): the conversation is tool use.
_FUNCTION_DECL = compile_alternation(
    r'"parameters"\s*:\s*\{|"type"\s*:\s*"function"|"(?:input_schema|json_schema|api_name)"\s*:'
    r"|\b(?:you have access to|you can (?:use|call)|here are) the following (?:functions|tools|apis)\b"
    r"|\btoolformer(?: access)?:|\buseful for when you (?:need|want) to\b"  # Toolformer / LangChain tool descriptions
)
# A prompt that opens with source code (a function stub to complete, a file to fix): coding.
_CODE_OPENING = compile_alternation(
    r"(?:def \w+\s*\(|class \w+\s*[(:{]|import [\w.]+(?: as \w+)?\s*$|from [\w.]+ import |#include\s*[<\"]|package [\w.]+;"
    r"|using (?:namespace |system)|public (?:class|static|interface) |(?:async )?function \w+\s*\(|(?:const|let|var) \w+ = "
    r"|<\?php|#!/|fn \w+\s*\(|func \w+\s*\(|select [\w*, .]+ from )",
    re.MULTILINE,
)
# A table's SQL definition anywhere in the prompt ("Context: CREATE TABLE head (age INTEGER)", text-to-SQL data):
# the task is a query. "Create a table of the planets" has no name and parenthesis after it.
_SQL_SCHEMA = compile_alternation(r"\bcreate table (?:if not exists )?[\w.\"`\[\]]+ ?\(")
# A fenced block tagged with a programming language ("```python", "```diff"): code to write, read or fix. Not css:
# ChatGPT users paste its plain-text blocks, which it often fences as css ("Tower of Hanoi" states).
_CODE_FENCE = compile_alternation(
    r"```[ \t]*(?:python[23]?|py|javascript|js|typescript|ts|jsx|tsx|java|c|cpp|c\+\+|csharp|c#|cs|go|golang|rust|rs|ruby|rb|php"
    r"|sql|mysql|postgresql|bash|sh|shell|zsh|console|powershell|ps1|bat|diff|patch|html|kotlin|kt|swift|scala|r|matlab"
    r"|perl|lua|haskell|dart|vue|svelte|dockerfile|makefile|cmake|verilog|vhdl|asm|nasm|objective-c|objc|elixir|clojure|julia"
    r"|fortran|groovy|solidity|vba|apex|gdscript)[ \t]*\n"
)
# "I want you to act as a Linux terminal. I will type commands and you will reply with what the terminal should show":
# the assistant simulates a program for the user to play with (the labellers' brief counts it as role-play).
_SIMULATED_PROGRAM = compile_alternation(
    r"\bact as (?:a |an |the )?(?:[\w+#.-]+ ){0,2}(?:terminal|console|interpreter|shell|command line|repl)\b[^\n]{0,120}?\bi(?: will|'ll) type\b"
)
# A text asked for by naming it, with no verb ("haiku about my cat knocking stuff over", "caption for insta pic of my
# corgi", "about us section for my dog grooming business"). Not "speech to text", not "the story of the Titanic".
_NAMED_TEXT = compile_alternation(
    r"^\W*(?:(?:a|an|some|\d+|few|a few|couple(?: of)?)\s)?(?:(?:short|funny|quick|cute|catchy|formal|professional|good|nice|sweet|sad"
    r"|long|simple|creative|heartfelt|polite|romantic|spooky|rhyming)\s){0,2}(?:instagram |insta |ig |linkedin |twitter |facebook |tiktok )?"
    r"(?:caption|haiku|poem|limerick|slogan|tagline|tweet|toast|speech|bio|about us(?: section| page)?|cover letter|email|story|lyrics|rap"
    r"|jingle|ad copy|product description|blog post|essay|article|eulogy|wedding speech|best man speech|thank[- ]you note|sonnet|short story)"
    r"s?\b(?! to text)(?: (?:for|about|on|to|that|where|in which|with)\b)"
)
_NAMED_TEXT_HEADS = frozenset(
    "caption haiku poem limerick slogan tagline tweet toast speech bio about cover email story lyrics rap jingle ad product blog "
    "essay article eulogy wedding best thank sonnet short".split()
)
# A later user turn asking for the previous answer again in a set form: the conversation is about obeying it.
_REDO_IN_FORM = compile_alternation(
    r"^\W*(?:(?:now|ok|okay|great|cool|thanks|nice|perfect|good|alright|next)\W+)*(?:can you |could you |please )?"
    r"(?:say|write|rewrite|repeat|redo|give me|explain|answer|do|tell me|put) (?:that|it|this|the (?:same|last|previous|above) (?:answer|response|thing|one))"
    r"(?: again)?\b[^.?!\n]{0,50}?\b(?:only (?:using|use|in|with)|using only|in (?:all )?(?:lowercase|uppercase|caps|capital letters)"
    r"|in (?:exactly )?(?:one|two|three|\d+) (?:words?|sentences?|bullet points?)|(?:in |under |within )(?:\d+|ten|twenty|fifty) words"
    r"|words of one syllable|one-syllable words|without (?:using )?(?:the letter|any commas|commas))\W*$"
)
# A programming-contest problem (Codeforces, APPS, AtCoder): limits per test, an Input section, "the first line contains".
_JUDGE_PROBLEM = compile_alternation(
    r"\b(?:time|memory) limit per test\b|(?:^|\n)[ \t]*-{3,}[ \t]*input[ \t]*-{3,}|(?:^|\n)[ \t]*#{0,3}[ \t]*input(?: format)?:?[ \t]*\n"
    r"[^\n]{0,200}\bthe first line\b|\bthe first line (?:of (?:the |each )?(?:input|test(?: case)?) )?contains (?:an? |one |two |the |single )?(?:integer|integers|number|string|\$)"
)
# Reddit WritingPrompts' tags opening a prompt ("[WP] A man discovers..."): a story to write.
_WRITING_PROMPT_TAG = compile_alternation(r"^\W{0,3}\[(?:wp|sp|eu|cw|tt|pi|ff|rf|mp|ip)\] ")
# Verifiable instructions about the answer's form (IFEval-style: counts of words or keywords,
# letter case, punctuation, wrappers, repeated requests): the point is obeying them -- steering.
_VERIFIABLE = compile_alternation(
    r"\b(?:in|of|throughout) (?:the|your) (?:entire |whole )?(?:response|reply)\b|\b(?:entire|whole) output\b"
    r"|\b(?:the|your) (?:entire |whole )?(?:response|reply)s? (?:must|should|needs to|has to|will) (?:contain|have|include|be|end|start|begin|not|use)\b"
    r"|\b(?:the|your) (?:entire |whole )?answer (?:must|should) (?:contain|have|include|end|start|begin|not)\b"
    r"|\b(?:each|every) (?:\d+\w* )?(?:word|sentence|line|paragraph|bullet|letter)s? (?:of|in) (?:the|your) (?:response|answer)\b"
    r"|\brepeat the (?:request|question|prompt)\b|\bonly output this sentence\b"
    r"|\banswer with (?:a list of items|at least \d|at most \d|less than \d|fewer than \d|more than \d|exactly \d|one of the following options)"
    r"|\b(?:use|include|contain) (?:at least|at most|exactly|no more than|fewer than|less than) \d+ (?:unique |different |distinct )?"
    r"(?:words|numbers|pronouns|conjunctions|coordinating conjunctions|keywords|placeholders|bullet points|highlighted sections|times)\b"
    r"|\bkeyword \S+ (?:once|twice|\w+ times|in the \d+)|\bthe (?:word|letter|keyword) \S+ should appear\b"
    r"|\bin all (?:lowercase|capital|uppercase) letters\b|\bno capital letters\b|\b(?:refrain from|avoid) (?:the )?use of (?:any )?commas\b"
    r"|\b(?:do not|don't) use any commas\b|\bwrap (?:your )?(?:entire )?(?:response|answer|output)\b"
    r"|\bwrapped in double (?:angular brackets|quotation marks)\b|\bshould be wrapped in\b|\bpostscript starting with\b"
    r"|\bhighlight at least \d+ sections?\b|\bmark the beginning of each section\b|\bno other words should follow\b"
    r"|\bseparated (?:by|with) (?:the markdown divider|\d+ asterisk)|\b(?:finish|end) your (?:response|answer|reply) with (?:this|the) exact\b"
    r"|\bwords with all capital letters\b|\bgive two different responses\b|\bno two (?:consecutive|adjacent) words\b"
    r"|\b(?:each|every) (?:\w+ )?(?:word|sentence|line|paragraph|section|phrase|bullet)(?:'s)? (?:must|should|has to|needs to|starts|begins|ends)\b"
    r"|\b(?:at the end|at the beginning|the start) of (?:each|every) (?:sentence|line|paragraph)\b"
    r"|\buse only words\b|\b(?:using|with) only words\b|\bwords (?:that|which) (?:contain only|start with the letter|begin with the letter)\b"
    r"|\balternate between words\b|\bindenting each new line\b|\bquotes within quotes\b|\buse this exact template\b"
    r"|\bwrite the entire (?:response|answer|reply) in\b|\bthe output should not contain\b|\bin reverse order of what\b"
    r"|\buse every standard punctuation\b|\buse an emoji at the end\b|\bcopy the span of words\b"
)
# IFEval's forms: placeholders, counted sentences and bullets, separators, highlighted sections, keywords
# that must (not) appear, double angular brackets, the answer's letter case, repeated requests, fixed endings.
# Run only when one of _IFEVAL_CUES is in the text (a long alternation costs ~0.3 ms a call).
_IFEVAL_FORM = compile_alternation(
    r"\bplaceholders?\b.{0,40}\bsquare brackets\b|\b(?:at least|exactly) (?:\d+|one|two|three) placeholders?\b"
    r"|\b(?:exactly|at least|at most|less than|fewer than|no more than) (?:\d+|one|two|three|four|five|six|ten) (?:sentences?|bullet points)\b"
    r"|\bexactly (?:\d+|one|two|three|four|five|six) (?:paragraphs|sections)\b"
    r"|\bseparated? (?:them |the \w+ |your \w+(?: \w+)? |each \w+ )?(?:with|by) (?:\"?\*{3,}|six asterisks|\d+ asterisks?|the markdown divider|two new lines|double line breaks)"
    r"|\b(?:highlight|italici[sz]e|bold)\w*(?: /\w+)? (?:at least \d+|at least one|some|each|one|two|three) (?:text )?(?:sections?|words|phrases|parts)"
    r"|\bitalic text\b|\bin (?:the )?markdown format\b"
    r"|\binclude (?:the )?keywords?\b|\bkeywords? [\"'][^\"']{1,30}[\"'] and\b"
    r"|\b(?:word|letter) [\"']?\w+[\"']? (?:should |must |will )?(?:appears?|shows? up) (?:at least|at most|less than|more than|fewer than|exactly|\d)"
    r"|\buse the word [\"']?\w+[\"']? (?:once or less|at least|at most|exactly)"
    r"|\b(?:do not|don't|doesn't|does not|without) (?:include|including|using|use|saying|say|mention) (?:the )?(?:keywords?|words?|letters?) [\"']?\w"
    r"|\b(?:exclude|avoid) the (?:keywords?|words?)\b|\bavoid using the letter\b"
    r"|\bin double (?:angular brackets|quotation marks|quotes)\b|<<[^<>\n]{1,40}>>"
    r"|\b(?:answer|respond|reply|write) (?:with|in|using) (?:only )?(?:lowercase|uppercase|capital) letters\b"
    r"|\buse (?:all|only) (?:lowercase|uppercase|capital) letters\b|\bletters are (?:lowercase|uppercase|capitali[sz]ed)\b"
    r"|\brepeat (?:all )?(?:the )?(?:text above|exact request|first line)\b|\brepeat [^.]{0,30} word for word\b"
    r"|\bmy answer is (?:yes|no|maybe)\b|\b(?:each |every )?sections? marked with\b|\bno other language is allowed\b"
    r"|\b(?:finish|end) (?:your |the |it )?(?:entire |whole )?(?:(?:response|answer|reply|poem|letter|email|essay|story) )?with (?:the |this )?(?:exact )?(?:phrase|sentence)\b"
    r"|\bp\.p\.s\b|\bpost ?script\b[^.\n]{0,30}\b(?:starting|starts|beginning|begins) with\b"
    r"|\ball in (?:lowercase|uppercase|capital) letters\b|\bwithout (?:using )?(?:any )?(?:capital letters|commas)\b"
    r"|\b\d+ to \d+ (?:sentences|paragraphs|bullet points)\b|\binclude the words\b"
    r"|\b(?:at least|at most|fewer than|less than|exactly) \d+ words\b[^.\n]{0,40}\b(?:in all caps|in all capital letters|all capitali[sz]ed)"
    r"|\b(?:include|includes|including|contain|contains|containing|use|uses) the (?:letter|word|keyword) [\"']?\w+[\"']? at least (?:\d+|once|twice)"
)
_VERIFIABLE_TAIL_CUES = ("respon", "answer", "repl", "output", "word", "letter", "comma", "sentence", "line", "paragraph", "section", "emoji", "quote")
_IFEVAL_CUES = ("placeholder", "sentence", "bullet point", "paragraphs", "sections", "separat", "highlight", "italic", "bold",
                "markdown", "keyword", "appear", "show up", "shows up", "the word", "the letter", "words ", "exclude", "double", "<<",
                "letters", "repeat", "my answer is", "marked with", "no other language", "phrase", "p.p.s", "postscript", "post script", "commas",
                "include the words")
_VERIFIABLE_TRIGGERS = frozenset(
    "response responses reply output answer repeat keyword letter letters lowercase capital uppercase commas wrap wrapped "
    "postscript highlight section separated words word each every only alternate template entire reverse emoji copy quotes numbers "
    "pronouns conjunctions keywords placeholders unique times punctuation".split()
)
_CODE_LINE_START = compile_alternation(
    r"[ \t]*(?:def |class |import |from [\w.]+ import|#include|public |private |function |const |let |var |select |insert |update |create table"
    r"|for ?\(|if ?\(|while ?\(|return\b|print\(|console\.log|<[a-z]+[ >]|\$ |sudo |pip install|npm )"
)


def _code_lines(text: str, enough: int) -> int:
    """Code-like lines in ``text`` (a code opening, a ;/{/} line end, or =>), counting no further than ``enough``.

    A loop over lines with C-level string tests: a regex scanning every position of a prose
    paragraph for line ends cost ~30 µs a call.
    """
    n = 0
    for line in text.split("\n"):
        n += (_CODE_LINE_START.match(line) is not None) + line.rstrip(" \t").endswith((";", "{", "}")) + line.count("=>")
        if n >= enough:
            return enough
    return n
# Programming languages and tools by name: unlike the code word list ("rest", "class", "string"), never everyday words.
_LANGUAGE_WORDS = frozenset(
    "python javascript typescript java c++ c# rust golang sql html css bash php ruby kotlin swift scala haskell perl lua "
    "vue react angular django flask fastapi node regex powershell matlab verilog vhdl".split()
)
_COUNTING = compile_alternation(
    r"\bhow many (?:distinct |different |possible |unique )?(?:ways|arrangements|permutations|combinations|subsets|diagonals)\b"
    r"|\bin how many (?:distinct |different )?ways\b|\bnumber of (?:distinct |different |possible )?(?:ways|arrangements|permutations|combinations)\b"
)
_COUNTING_CUES = ("ways", "arrangement", "permutation", "combination", "subsets", "diagonals")
# An arithmetic expression: digits around * × ÷ ^ + or a spaced minus (not dates, phone numbers or ShareGPT's "2 / 2").
_ARITHMETIC = compile_alternation(
    r"(?<![\w.:/-])\d+(?:\.\d+)?\s*(?:[*×÷^+]|\s[-−]\s)\s*\(?\d+(?:\.\d+)?(?![\w:/-])"
    r"|(?<![\w.])\d+(?:\.\d+)? ?(?:%|percent) of \$?\d"  # "what's 15% of 80?"
)
_WORD_PROBLEM = compile_alternation(r"\bhow (?:many|much|long|far|old)\b")
# An exam-style question: three or more lettered options (A. / (B) / C) ...).
_MCQ = compile_alternation(
    r"(?:^|\n)[ \t]*\(?a[.):][ \t].*\n[ \t]*\(?b[.):][ \t].*\n[ \t]*\(?c[.):][ \t]"
    r"|\(a\)[ \t][^\n]+?[ \t]\(b\)[ \t][^\n]+?[ \t]\(c\)[ \t]"
)
# Operators between numbers, "x = 3", \frac, √ π ≤. The first character is matched once and the branches look
# back at it: the same matches as the plain alternation, read about 30% faster (its scan is the tagger's costliest).
_MATH_NOTATION = compile_alternation(
    r"[\dxyz\\√π∫∑≤≥](?:(?<=\d) ?[-+*/×÷^=] ?\d|(?<=[xyz]) ?[=<>^] ?\d|(?<=\\)(?:frac|sqrt|int|sum)|(?<=[√π∫∑≤≥]))"
)
_PERSONA_OPENING = compile_alternation(
    r"^\W*(?:you are (?:a|an|the)? ?(?!given|provided|asked|required|going)\w+|you're (?:a|an) \w+|imagine (?:you are|you're|yourself as)|pretend (?:to be|you are|you're)"
    r"|act as|i want you to act as|role-?play|let'?s role-?play|as (?:a|an) [\w -]{2,40},|take on the role|in character|stay in character|you will be)"
)
def _is_mcq(text: str) -> bool:
    """Lettered options, not lettered parts of one exercise ("(a) Find ... (b) Compute ... (c) Predict")."""
    if not ("b)" in text or "b." in text or "b:" in text) or _MCQ.search(text) is None:
        return False
    starts = _LETTERED_START.findall(text[:3000])
    return sum(w in _TASK_WORDS for w in starts[:4]) < 2


_LETTERED_START = compile_alternation(r"(?:^|\n)[ \t]*\(?[a-d][.):][ \t]+([a-z]+)")
_TASK_WORDS = frozenset(
    "find compute calculate determine show prove explain describe predict estimate derive sketch write state list give evaluate "
    "solve what how why which is are does do can identify compare discuss suggest draw use".split()
)


# A user turn that casts the assistant as a character for the conversation.
_CAST_CUES = ("role", "persona", "pretend", "character", "from now on", "you are playing", "扮演", "rôle", "personnage", "spielst")
# "Answer as she would in 1843", "you be the shopkeeper and I'll be the customer", "let's play a text
# adventure": the user sets up a scene with the assistant in a part (run only when their cue words are there).
_AS_THEY_WOULD = compile_alternation(r"\b(?:answer|respond|reply|speak|talk) as (?:(?:he|she|they) would|her|him|them)\b")
_BE_MY = compile_alternation(
    r"\b(?:can|could|will|would) you (?:be|play|act as) (?:the|my|an?) (?:interviewer|dm|gm|dungeon master|game master|examiner|opponent|debate opponent)\b"
    r"|\bbe my (?:dm|gm|dungeon master|game master|nonna|grandma|granny|grandmother|grandpa|girlfriend|boyfriend|mom|mum|dad)\b"
)
_TWO_PARTS = compile_alternation(
    r"\b(?:can|could|will) you (?:play|be|pretend to be) (?:a|an|the|my) [^.?!\n]{2,80}[.?!,]\s+i(?:'ll| will) (?:be|play) (?:the|a|an|your)\b|"
    r"\byou(?:'ll| will)? (?:be|play) (?:the |a |an )?[\w -]{2,30} and i(?:'ll| will)? (?:be|play)\b"
    r"|\bi(?:'ll| will)? (?:be|play) (?:the |a |an )?[\w -]{2,30} and you(?:'ll| will)? (?:be|play)\b"
    r"|\b(?:you )?(?:voice|play) (?:all )?the (?:suspects|characters|npcs|villagers|other characters|townsfolk)\b"
)
_ADVENTURE = compile_alternation(r"\b(?:begin|start|run|play|let'?s (?:play|do)) (?:a |an |the )?(?:interactive |text[- ]based |text )adventure\b"
                        r"|^\W*(?:an? )?(?:\w+ )?text adventure\b")
_CAST_USER = compile_alternation(
    r"(?:^|[.!?:]\s+|\bplease |\byou |\bnow |\bto )(?:embrace|assume|take on|adopt|play|embody) the (?:role|persona|character|part) of\b"
    r"|\bembody the persona\b"
    r"|\bpretend (?:yourself )?to be\b|\bpretend (?:that )?(?:you are|you're)\b|\brole-?play\b|\bstay in character\b"
    r"|\bfrom now on,? you (?:are|will be)\b|^\W*you are playing (?:a|an|the)\b"  # not "act as a <job>": often a coding or advice request in a costume
    r"|\b(?:respond|reply|answer|speak|talk|write|stay|remain|keep) in[- ]character\b"
    r"|扮演[^\n]{0,80}?(?:和我|与我|跟我|保持角色|我是|我扮演)|角色扮演|\bjoue le rôle\b|\breste dans le personnage\b|\bdu spielst\b"
)
_PERSONA_SYSTEM = compile_alternation(r"\byou are (?!a (?:helpful|function-calling)|an? (?:ai|assistant))|\bcharacter\b|\brole-?play|\bpersona\b")
# A system prompt that frames the assistant as an assistant or an expert ("You are a helpful assistant",
# OpenOrca's "You are an AI assistant. User will you give you a task...", "You are ChatGPT...", "You are
# an expert Python developer", Alpaca's and Vicuna's preambles) says nothing about the category: the
# task in the user turn does. Only a system prompt that casts some other persona feeds the model.
# Who would be good at a task: a persona made of one of these is a costume for the task, not a character.
_ROLE_NOUNS = (
    r"(?:ai|a\.i\.|assistant|chatbot|bot|language model|llm|model|expert|specialist|tutor|teacher|advisor|adviser|consultant"
    r"|engineer|developer|programmer|coder|scientist|analyst|researcher|professor|mathematician|doctor|physician|lawyer"
    r"|attorney|accountant|writer|copywriter|editor|translator|reviewer|grader|judge|evaluator|professional|coach|manager"
    r"|marketer|strategist|planner|designer|recruiter|generator|historian|educator|explainer|economist|physicist|chemist"
    r"|biologist|pharmacist|nurse|dietitian|nutritionist|therapist|psychologist|architect|auditor|actuary|librarian|linguist"
    r"|philosopher|statistician|instructor|lecturer|mentor|counsell?or|paralegal|clinician|veterinarian|helper|concierge"
    r"|representative|agent|buddy|tool|app|service|engine|platform|plugin)s?\b"
)
_ASSISTANT_ROLE = compile_alternation(
    r"^\W*(?:you are|you're|i am|act as|as) (?:a |an |the |my |your )?(?:[\w,'-]+ ){0,5}?" + _ROLE_NOUNS
    + r"|^\W*you are (?:chatgpt|gpt|claude|gemini|llama|qwen|mistral|hermes|deepseek|phi|gemma|vicuna|alpaca)"
)
# What follows "pretend to be" / "take on the role of" when no character is cast: a job ("a tax advisor"), an
# activity ("pretend that you are writing a rap battle") or an ability ("pretend to be able to browse").
_NAMED_JOB = compile_alternation(r"(?:[\w'-]+ ){0,3}?" + _ROLE_NOUNS)
_CAST_NO_CHARACTER = compile_alternation(r"\W*(?:(?:a |an |the |my |your )?(?:[\w,'-]+ ){0,5}?" + _ROLE_NOUNS + r"|\w+ing\b|able\b)")


# Sentences of a system prompt that any assistant could carry whatever the task: who the assistant
# is (an AI, an assistant, a named model "created by" someone), dataset preambles (Alpaca's "Below is
# an instruction...", Vicuna's "A chat between..."), generic task framing ("User will give you a task",
# "think step by step", "provide a detailed answer"), safety boilerplate and dates. Dropped before the
# system-prompt rules run, so "always answer as helpfully as possible" is not an output rule and "You
# are ChatGPT, a large language model" is not a character; what remains ("Always respond in French")
# still counts.
_BOILERPLATE_SENTENCE = compile_alternation(
    r"^\W*(?:"
    r"(?:you are|you're|i am|this is|meet) (?:a |an |the |my |your )?(?:[\w,'-]+ ){0,8}?(?:ai|a\.i\.|assistant|chatbot|bot"
    r"|language model|llm|artificial intelligence|system)\b"
    r"|you are [\w.-]+(?: [\w.-]+)?, (?:created|made|developed|trained|built) by\b"
    r"|(?:you are|you're|be|always be) (?:very |extremely |always )?(?:helpful|harmless|honest|friendly|polite|respectful|kind"
    r"|knowledgeable|concise|accurate|thorough|precise|truthful|unbiased|objective)\b"  # the assistant's virtues
    r"|(?:a|the following is a|this is a|below is a) (?:chat|conversation|dialogue)\b|below is an instruction|write a response that"
    r"|the (?:assistant|ai)(?: is| gives| provides| always| should| will| must)\b"
    r"|(?:the )?user will (?:you )?give you|you will be given (?:a|an)\b|your (?:goal|task|job|purpose|role)(?: and drive)? is\b"
    r"|while (?:performing|answering|doing|solving)\b|(?:let's |please )?(?:think|reason) (?:step[- ]by[- ]step|carefully|through)"
    r"|you should think\b|(?:justify|explain) your (?:steps|answer|reasoning)|help as much as you can"
    r"|(?:please )?(?:provide|give) (?:a |an )?(?:detailed|concise|helpful|accurate|clear|thorough|complete|short|brief)\b"
    r"|you (?:must|should|will|might) (?:generate|provide|give|produce|need to use) (?:a |an |additional )?(?:detailed|long|concise|helpful|knowledge)\b"
    r"|(?:always )?(?:answer|respond|assist)s? (?:as helpfully|with care)|(?:your )?(?:answers|responses|replies) should (?:not include|be)\b"
    r"|(?:please )?ensure (?:that )?(?:your )?(?:responses|replies|answers)\b|if (?:a|the) question (?:does not|doesn't)\b"
    r"|if you (?:don't|do not) know\b|avoid (?:harmful|unethical|prejudiced)|you always comply\b"
    r"|(?:knowledge cutoff|cutting knowledge date|current date|today date|today's date|today is)\b"
    r")"
)
# A first turn with nothing in it but a greeting or an announcement that a request is coming ("hey, quick one",
# "I have a question.", "Can you help me with something?"): the next user turn is the opening that decides.
_GREETING = compile_alternation(
    r"^\W*(?:(?:hi|hello|hey|hiya|yo|greetings|good (?:morning|afternoon|evening|day))(?: there| friend| again)?\W*)?"
    r"(?:quick (?:one|question)|(?:i(?:'ve| have)(?: got)?|got) (?:a|another|one more) (?:quick |small |little )?question"
    r"|(?:can|could|may) (?:you help me|i ask you)(?: with)?(?: (?:something|a question|a quick question))?(?: please)?"
    r"|are you there|i need (?:some |your )?help(?: with something)?)?\W*$"
)
_SENTENCE_BREAK = compile_alternation(r"(?<=[.!?])\s+|\n+")


def without_boilerplate(sys_text: str) -> str:
    """A (lowercased) system prompt without the sentences any assistant could carry whatever the task."""
    if not sys_text:
        return sys_text
    kept = [s for s in _SENTENCE_BREAK.split(sys_text[:3000])
            if s.strip() and (not _BOILERPLATE_SENTENCE.match(s) or _SYSTEM_RULE.search(s))]  # "...an assistant that answers in JSON"
    return " ".join(kept) + sys_text[3000:]


# Whole sentences a dataset's template puts before the request in the user turn. Narrower than the
# system-prompt boilerplate: "You are an AI life coach advising a client..." is a persona, and "Give a
# brief description of..." is the request itself.
_USER_PREAMBLE = compile_alternation(
    r"\W*(?:you are (?:a |an )?(?:(?:helpful|harmless|honest|friendly|polite|respectful|knowledgeable|smart|intelligent|useful"
    r"|virtual|ai|artificial intelligence)[, ]+(?:and )?)*(?:ai )?(?:assistant|chatbot|language model)(?: that helps people find information)?"
    r"|you are (?:chatgpt|gpt-?[\d.o]*|claude|gemini|llama|qwen|mistral)(?:, (?:a large language model|an ai assistant)[^.!?\n]*)?"
    r"|(?:a|this is a) (?:chat|conversation) between [^.!?\n]*|below is an instruction[^.!?\n]*"
    r"|write a response that appropriately completes the request|(?:the )?user will (?:you )?give you a (?:task|question)[^.!?\n]*"
    r"|your (?:goal|task|job) is to (?:complete the task|answer) as faithfully as you can|while (?:performing the task|answering) think step-by-step[^.!?\n]*"
    r")[.!]?"
)
_TEMPLATE_INSTRUCTION = compile_alternation(r"^#{2,4} ?(?:instruction|input|question|human|user|prompt):?[ \t]*$|^#{2,4} ?(?:instruction|input|question|human|user|prompt): ", re.MULTILINE)
_TEMPLATE_RESPONSE = compile_alternation(r"^#{2,4} ?(?:response|answer|assistant|output):?", re.MULTILINE)


def without_preamble(user_text: str) -> str:
    """A (lowercased) user turn without a prompt template's preamble: Alpaca's "Below is an instruction...
    ### Instruction: ... ### Response:" keeps the instruction and input; leading assistant boilerplate
    ("You are an AI assistant.") is dropped. Datasets exported with the template inside the turn read
    like the bare request."""
    head = _TEMPLATE_INSTRUCTION.search(user_text[:1500])
    if head:
        body = user_text[head.start():]
        end = _TEMPLATE_RESPONSE.search(body)
        body = body[: end.start()] if end else body
        user_text = _TEMPLATE_INSTRUCTION.sub("", body).strip()
    sentences = _SENTENCE_BREAK.split(user_text[:1500], maxsplit=8)
    n = 0
    while n < len(sentences) - 1 and _USER_PREAMBLE.fullmatch(sentences[n].strip()):
        n += 1
    return _SENTENCE_BREAK.split(user_text, maxsplit=n)[-1].lstrip() if n else user_text


def system_casts_persona(sys_text: str) -> bool:
    """Whether a (lowercased) system prompt casts a persona other than an assistant or an expert."""
    head = sys_text[:300]
    return _PERSONA_OPENING.search(head) is not None and _ASSISTANT_ROLE.search(head) is None
_CONSTRAINT = compile_alternation(
    r"\b(?:in (?:exactly |at most |no more than |under |less than )?\d+ (?:words|sentences|characters|lines|bullet points)"
    r"|(?:only|just) (?:answer|respond|reply|output)|(?:answer|respond|reply) (?:only )?(?:in|with) (?:a single|one|json|yes or no|english|french|spanish|german|chinese)"
    r"|single word|yes or no|always respond|never (?:mention|say|reveal|use)|do not (?:mention|reveal|include)|must (?:always|never|respond|answer))"
)
_WORD = compile_alternation(r"[a-z][a-z'_]*|\d+|[{}()\[\];=<>+\-*/^$\\#|`@%]")

# Word lists, looked up in the token set (one hash per word instead of a regex scan).
_CODE_WORDS = frozenset(
    "python javascript typescript java c++ c# rust golang sql html css bash regex function algorithm compile compiler "
    "debug api json array string variable class method script program code query loop recursion database "
    # languages, runtimes, frameworks and tools a programmer names (general knowledge, not read off any dataset)
    "js node npm typescript react vue angular svelte django flask fastapi laravel php ruby rails perl lua kotlin swift "
    "scala haskell ocaml elixir clojure fortran cobol matlab vba powershell shell zsh awk sed grep regexp docker "
    "kubernetes kubectl helm terraform ansible nginx apache linux ubuntu debian nix git github gitlab ci yaml xml csv "
    "pandas numpy pytorch tensorflow keras sklearn jax dataframe postgres postgresql mysql sqlite mongodb redis "
    "graphql rest endpoint http https url backend frontend css html5 dom jquery webpack vite jest pytest unittest "
    "compiler runtime syntax exception traceback stacktrace segfault null pointer struct enum trait interface "
    "async await thread threads mutex coroutine lambda closure iterator generator decorator refactor repo commit "
    "gui tkinter pyqt qt android ios xcode unity godot unreal shader glsl opengl vulkan cuda gpu verilog vhdl "
    "arduino firmware assembly bytecode wasm solidity smart-contract api's apis sdk cli bash-script cron".split()
)
_MATH_WORDS = frozenset(
    "solve calculate compute equation equations integral derivative probability percent percentage average mean median "
    "ratio fraction prime factor theorem prove proof geometry triangle circle radius area perimeter volume sum product "
    "multiply divide algebra polynomial matrix multiplication divided sequence formula convert quartile".split()
)
# Maths words with an everyday sense ("product manager", "what does it mean", "thrust area", "md5sum"): they
# decide for maths only beside maths notation in the prompt.
_EVERYDAY_MATH_WORDS = frozenset(
    "product mean area convert factor sequence formula sum matrix solve volume proof average percent percentage ratio".split()
)
_WRITING_WORDS = frozenset(
    "story stories poem poetry haiku limerick sonnet essay article blog post tweet slogan tagline lyrics song script email "
    "letter speech advertisement caption headline narrative novel chapter screenplay jingle rap review memoir".split()
)
# Specialist vocabulary by field, written from general knowledge (word stems: a word counts when it
# starts with one; stems under four letters count only as whole words). Each field is a feature of
# its own and the hits are counted -- evidence for domain_expert the model weighs, not a rule.
# Everyday words that also have a specialist sense (sentence, current, interest, cell...) are left out.
_DOMAIN_LEXICON: dict[str, str] = {
    "med": "diagnos symptom disease clinic patient medic drug dosage therap surgery surgical cancer tumor tumour oncolog "
           "diabet vaccin infect virus bacteri immun antibod antigen anatom physiolog pharmac toxic veterinar "
           "psychiatr neurolog neuron cardio cardiac arter syndrome lesion prognos pathogen pathol insulin renal kidney "
           "hepat liver pulmonar respirat metabol hormone endocrin antibiot chemotherap radiolog epidemiolog dementia "
           "alzheimer parkinson autism adhd depress schizophren bipolar ibuprofen acetaminophen placebo cholesterol "
           "hypertens asthma allerg inflamm glucose nutrient dietar obesity prescri orthoped dermatolog ophthalm "
           "pediatr obstetr gynecolog drugs doses "
           # clinical and consumer-health words (stems that are not the start of everyday words: not "pill", "hospital", "statin")
           "pregnan trimester postpartum prenatal antenatal fetal fetus miscarr contracept ovulat menstru menopaus fever "
           "nausea vomit diarrh rash rashes fractur sprain bleeding dizzy dizziness fainted seizure migraine headache dehydrat breastfe "
           "newborn neonat injur concuss paramedic physician doctor nurse biopsy ultrasound dialysis catheter stent "
           "pneumon bronch influenza covid coronavir sepsis anemi anaemi thyroid arthrit osteopor eczema psoria acne "
           "opioid steroid antidepress ssri lupus nephr herpes ulcer hernia colonoscop mammogra tetanus rabies malaria "
           "tubercul epilep anaphyla epipen isotretin dose mg cpr icu mri ecg ekg hiv flu "
           # symptoms and body parts people describe when they ask about their health
           "swollen swelling itchy itching sore cough sneez bruis lumps numbness tingl insomnia fatigue aching "
           "ankle knee knees wrist spine spinal jaw toe ribs lung lungs stomach abdomen abdominal bowel bladder uterus prostate "
           "thirsty urinat sciatica tendon ligament cartilage sinusitis tonsil "
           # everyday health words people use instead of clinical ones
           "vitamin toothache earache stomachache dental dentist crohn colitis reflux heartburn constipat bloating hives "
           "wheez phlegm mucus nipple sunburn sunscreen antacid laxative probiotic painkiller",
    "law": "legal statut court lawsuit litigat liabilit constitution amendment regulat complian patent copyright "
           "trademark tort plaintiff defendant jurisdiction estoppel fiduciar attorney lawyer judici verdict "
           "prosecut felon misdemean contract indemn arbitrat precedent legislat gdpr hipaa subpoena testimon "
           "custody landlord tenant eviction law laws sue torts tortious",
    "fin": "financ invest stock$ stocks$ stockholder stockbroker bond bonds equit hedge$ hedges$ hedging$ portfolio inflation monetar fiscal accounting bookkeep derivativ "
           "crypto blockchain econom gdp revenue valuation asset amortiz depreciat dividend actuar mortgage "
           "liquidity recession tariff macroeconom microeconom keynes elasticit arbitrage volatil ledger audit$ audits$ auditor$ auditors$ auditing$ "
           "ebitda cashflow treasur bitcoin ethereum defi forex annuit",
    "phys": "physics quantum relativ thermodynam electromagnet magnet electron photon neutrino particle wavelength "
            "entropy momentum inertia gravit velocity accelerat kinetic friction oscillat frequenc optic refract "
            "spectrum spectra radiat nuclear fission fusion plasma superconduct semiconductor voltage capacitor "
            "inductor transistor torque aerodynam viscos astrophys cosmolog astronom galax stellar supernova "
            "boson fermion quark hadron lepton asteroid comet planetar exoplanet nebula redshift pulsar quasar "
            "interferen diffract polariz dielectric impedance resistor",
    "chem": "chemi molecul atom atoms atomic isotope ion ions ionic covalent oxidat catalys enzyme protein polymer inorganic acid acids acidic acidity "
            "alkali ph stoichiom reagent solvent solute titrat periodic electrolys hydrocarbon alkane ester "
            "molar molarity enthalpy equilibri solubil precipitat electronegativ redox isomer alkene alkyne benzene "
            "ketone aldehyde cation anion",
    "bio": "biolog gene genes genetic genom dna rna chromosom mutation species evolution ecolog ecosystem photosynth "
           "mitochond cell cells cellular organism microb fungi taxonom phylogen neurotransm cognit neurosci zoolog "
           "botan mitosis meiosis ribosom crispr eukaryot prokaryot organelle golgi allele phenotyp genotyp homozyg "
           "heterozyg cytoplasm chloroplast xylem phloem osmosis nucleotide",
    "eng": "engineer mechanic structural aerospace hydraul thermal turbine combustion actuator sensor tcp protocol "
           "bandwidth latency router firmware microcontroller modulat antenna microprocessor amplifier kinemat "
           "thermocouple",
    "hum": "philosoph theolog historian historiograph linguist literar sociolog anthropolog psycholog epistemolog "
           "ontolog metaphysic ethic existential phenomenolog hermeneut semiotic kant hegel nietzsche marx "
           "aristotle plato socrat descartes foucault postmodern colonial feudal geopolit sovereign ideolog "
           "rhetoric morpholog phonolog kantian marxism marxist",
    "sci": "scientif research hypothes theory theories empiric experiment methodolog statistic variance regression "
           "correlation causal bayes",
}


def _lexicon_index(lexicon: dict[str, str]) -> tuple[dict[str, tuple[tuple[str, str], ...]], dict[str, str]]:
    """(four-letter prefix -> (stem, field)s) for stems of five letters or more; whole words for shorter ones, so
    "gene" is not "general" or "generate", "defi" not "define", "cell" not "cello" and "tort" not "tortilla"."""
    by_prefix: dict[str, list[tuple[str, str]]] = {}
    whole: dict[str, str] = {}
    for field, stems in lexicon.items():
        for stem in stems.split():
            if len(stem) <= 4 or stem.endswith("$"):  # "$": a whole word ("hedge$" is not "hedgehog")
                whole[stem.rstrip("$")] = field
            else:
                by_prefix.setdefault(stem[:4], []).append((stem, field))
    return {k: tuple(v) for k, v in by_prefix.items()}, whole


_DOMAIN_BY_PREFIX, _DOMAIN_WHOLE = _lexicon_index(_DOMAIN_LEXICON)
_SCIENCE_FIELDS = frozenset({"med", "phys", "chem", "bio", "eng"})


@lru_cache(maxsize=1 << 17)
def field_of(word: str) -> str | None:
    """The lexicon field of a word, or None when it is not specialist vocabulary (memoised: words repeat)."""
    field = _DOMAIN_WHOLE.get(word)
    if field is None and len(word) >= 4:
        for stem, f in _DOMAIN_BY_PREFIX.get(word[:4], ()):
            if word.startswith(stem):
                return f
    return field


def domain_fields(words: set[str]) -> list[str]:
    """The lexicon field of every word in ``words`` that is specialist vocabulary (one entry per word)."""
    return list(filter(None, map(field_of, words)))


# Someone describing their own or a relative's health ("I twisted my ankle", "my wife just fainted",
# "should my pregnant sister take vitamins"): a medical question, with a clinical word of the lexicon.
_PERSONAL_HEALTH = compile_alternation(
    r"\b(?:i|i'm|im|i've|my (?:\w+ )?(?:son|daughter|wife|husband|mom|mum|mother|dad|father|baby|child|kid|kids|toddler|friend"
    r"|sister|brother|grandma|grandmother|grandpa|grandfather|aunt|uncle|partner|boyfriend|girlfriend|neighbou?r|newborn|infant"
    r"|parents?|patient|dog|cat))\b[^.?!\n]{0,60}?\b(?:have|has|had|got|feel|feels|felt|feeling|been|am|is|was|keeps?|noticed"
    r"|take|takes|taking|took|fell|twisted|hurt|hurts|stung|broke|gave birth|delivered|pregnant|diagnosed|tested)\b"
)
# Someone asking where the law stands on their own situation ("can my employer legally fire me for...", "is it
# legal to record a call", "could they claim my land?"): a legal question, whatever words it uses.
_PERSONAL_LEGAL = compile_alternation(
    r"\b(?:is it|it is|is this|was it|would it be|is that) (?:even |actually )?(?:il)?legal\b|\blegally (?:allowed|required|obliged|entitled|able)\b"
    r"|\bcan (?:my|an?|the|our|his|her|their) (?:current |former |new )?(?:employer|boss|landlord|neighbou?r|ex(?:-wife|-husband)?|company|school"
    r"|hoa|tenant|bank|insurer|insurance company|police|cops?|manager|university|airline|contractor|parents?|roommate|seller|buyer)s?\b"
    r"[^.?!\n]{0,60}?\b(?:legally|fire|evict|sue|keep (?:my|the|our) (?:deposit|security deposit|money|wages|pay)|withhold|garnish|tow|claim)\b"
    r"|\b(?:can|could|should) (?:i|we) (?:sue|be sued|get sued|press charges|take (?:them|him|her|it) to (?:court|small claims))\b"
    r"|\bwhat are my (?:legal )?rights\b|\bunder (?:us|uk|eu|federal|state|english|scottish|german|french|canadian|australian|indian) law\b"
)
# The same for tax, retirement savings and the legal form of one's business ("roth vs traditional 401k, im 24",
# "can I deduct my home office as a W-2 employee", "SARL ou SAS ?", "autónomo ... Hacienda").
_MONEY_TERMS = frozenset(
    "tax taxes taxed deduct deduction deductible irs hmrc 401k roth ira pension 1099 w2 w-2 vat self-employed "
    "probate trust inheritance llc sarl sas eurl sasu gmbh autonomo autónomo hacienda impuestos impôt impôts steuer steuern".split()
)
_PERSONAL_MONEY = compile_alternation(
    r"\b(?:i|i'm|im|i've|my|we|we're|our|me)\b[^.?!\n]{0,120}?\b(?:tax(?:es|ed)?|deduct\w*|irs|hmrc|401\(?k\)?|roth|ira|pension|1099|w-?2"
    r"|vat|self-employed|capital gains|probate|living trust|estate (?:tax|plan)|inheritance tax|aut[oó]nomo|hacienda|impuestos|imp[ôo]ts?|steuern?)\b"
    r"|\b(?:tax(?:es|ed)?|roth|ira|401\(?k\)?|1099|w-?2|aut[oó]nomo|hacienda|living trust|probate)\b[^.?!\n]{0,120}?\b(?:i|i'm|im|i've|my|we|our|me)\b"
    # choosing a business form: "SARL ou SAS ?", "LLC or S-corp", "ИП или ООО"
    r"|\b(?:llc|s-corp|c-corp|sole proprietorship|sarl|sas|eurl|sasu|gmbh|ug|ltd|ип|ооо)\s*(?:vs\.?|or|ou|oder|o|или)\s*(?:an? )?"
    r"(?:llc|s-corp|c-corp|sole proprietorship|sarl|sas|eurl|sasu|gmbh|ug|ltd|ип|ооо)\b"
)
# Lexicon words too common outside medicine to mark a health question on their own.
_NOT_CLINICAL = ("toxic", "viral", "virus", "doctor", "nurse", "drug", "depress", "immun", "syndrome", "therap", "medic")


# Chinese prompts: the model's vocabulary is English, so a small glossary turns the cue words of a
# Chinese request into the English words the model already weighs (写 文章 -> write article), and the
# word lists above fire on them. General knowledge, not read off any labelled rows.
_CJK_GLOSSARY: dict[str, str] = {
    "write": "写 撰写 创作 编写 起草 续写 改写 仿写 扩写 写作 書いて 書く 書き",
    "create": "作成 創作",
    "design": "设计 策划",
    "article": "文章 稿件 推文 公众号 記事 ブログ",
    "essay": "散文 作文 随笔 论文",
    "story": "故事 小说 童话 寓言 情节 剧情 小説 物語 あらすじ 童話 昔話",
    "novel": "ラノベ 長編",
    "poem": "诗 诗歌 律诗 绝句 古诗 词牌 詩 俳句 短歌 和歌",
    "lyrics": "歌词 歌詞",
    "screenplay": "剧本 脚本 台词 串词 解说词 台詞 シナリオ",
    "speech": "开场白 讲稿 演讲稿 致辞 祝酒词",
    "review": "书评 影评 读后感 观后感 评论",
    "ad": "广告 文案 宣传 营销 求人広告",
    "slogan": "标语 口号 广告语 キャッチコピー",
    "letter": "祝福语 贺词 贺卡",
    "email": "邮件 信件 书信 来信 一封信 メール",
    "outline": "大纲 提纲",
    "code": "代码 编程 程序 函数 算法 接口 数据库 编译 调试 コード プログラム 関数",
    "python": "python",
    "sql": "sql",
    "calculate": "计算 求解 算出 等于多少 多少钱 各有多少 解题 鸡兔同笼 計算",
    "equation": "方程 不等式 函数图像",
    "probability": "概率 確率",
    "geometry": "几何 三角形 圆 面积 周长 体积",
    "prove": "证明 証明",
    "math": "数学 算术 加法 减法 乘法 除法",
    "roleplay": "扮演 角色扮演",
    "pretend": "假设你是 假装你是 你现在是 请你作为",
    "diagnosis": "诊断 症状 疾病 治疗 药物 医学 医生 患者",
    "legal": "法律 合同 诉讼 律师 法院 法规 条款",
    "finance": "金融 投资 股票 基金 财务 会计 经济学 税务",
    "physics": "物理 量子 力学",
    "chemistry": "化学 分子 化合物",
    "biology": "生物 基因 细胞 进化",
    "explain": "解释 说明 阐述",
    "what": "什么 哪些 哪个",
    "why": "为什么 为何",
    "how": "如何 怎么 怎样",
    "summarize": "总结 概括 摘要",
    "translate": "翻译 译成",
    "advice": "建议 推荐",
    "list": "列出 列举",
}


def _glossary_matcher(glossary: dict[str, str]) -> tuple[dict[str, str], re.Pattern]:
    """(term -> English word, a pattern finding the terms, longest first) for a glossary."""
    terms = {term.replace("~", " "): word for word, listed in glossary.items() for term in listed.split()}  # "~": a space
    return terms, re.compile("|".join(sorted(map(re.escape, terms), key=len, reverse=True)))


_CJK_TERMS, _CJK_TERM = _glossary_matcher(_CJK_GLOSSARY)
_CJK_CHAR = compile_alternation(r"[\u3400-\u9fff]")


# Other languages, the same way: cue words of Spanish, Portuguese, French, German, Italian and Russian
# requests (and the write/poem/story words of a dozen more) mapped to the English words the model knows. Stems in Cyrillic or with accents are found
# as substrings (only in texts that are not plain ASCII); unaccented words are looked up whole.
_INTL_GLOSSARY: dict[str, str] = {  # "~" joins the words of a term
    "ad": "anúncio реклам",
    "write": "напиши написать сочини écris écrire écrivez schreib escribí générer génère rédige viết بنویس اكتب लिखो लिखिए लिखें "
             "γράψε 써줘 작성해 เขียน napiš napište",
    "create": "придумай придумать придумайте bịa بساز créez crée",
    "continue": "допиши дописать продолжи continuación continúa",
    "poem": "стих поэм четверостиш вірш poème poesía poésie thơ قصيدة شعر कविता ποίημα şiir กลอน บทกวี báseň",
    "story": "рассказ истори сказк басн оповідання história chuyện truyện داستان قصة कहानी hikâye นิทาน เรื่องสั้น "
             "příběh povídk 이야기 소설 märchen erzählung",
    "song": "песн canción canção",
    "lyrics": "lời~bài~hát 가사 şarkı~sözü",
    "letter": "письм",
    "essay": "эссе сочинени",
    "article": "статью статья artículo مقال",
    "screenplay": "сценари guión kịch~bản scénář scénu scenariusz 대본",
    "dialogue": "диалог diálogo",
    "toast": "тост",
    "slogan": "слоган eslogan",
    "code": "код функци программ скрипт código función função lập~trình 코드 함수 โค้ด كود کد",
    "calculate": "вычисл посчитай рассчита 계산 คำนวณ احسب",
    "solve": "реши",
    "equation": "уравнени ecuación equação équation phương~trình 방정식 สมการ معادله معادلة",
    "probability": "вероятност probabilité probabilità xác~suất 확률",
    "prove": "докажи доказа chứng~minh 증명",
    "integral": "интеграл tích~phân",
    "derivative": "производн đạo~hàm",
    "explain": "объясни erkläre",
}
_INTL_TERMS, _INTL_TERM = _glossary_matcher(_INTL_GLOSSARY)
_FOREIGN_WORDS: dict[str, str] = {
    w: english
    for english, words in {
        "write": "escribe escribir escriba escreva escreve escrever ecris ecrire ecrivez schreibe schreiben scrivi scrivere redacta redige "
                 "napisz napisi napisati tulis tuliskan schrijf skriv skriva kirjoita",
        "poem": "poema poemas poesia poeme gedicht gedichte poesie wiersz pesmu pjesmu puisi pantun syair dikt",
        "story": "cuento relato conto historia histoire geschichte kurzgeschichte storia racconto opowiadanie verhaal cerita "
                 "novela romanzo favola fabula hikaye",
        "screenplay": "guion roteiro drehbuch sceneggiatura senaryo",
        "dialogue": "dialogo",
        "create": "genera",  # plain ASCII, so a whole word: as a substring it would be in "general"
        "lyrics": "liedtext",
        "song": "cancion chanson canzone lagu piosenka piosenke",
        "letter": "carta lettre lettera anschreiben",
        "essay": "ensayo ensaio aufsatz saggio",
        "ad": "anuncio annonce anzeige stellenanzeige werbeanzeige inserat",
        "law": "ley leyes loi lois gesetz gesetze legge lei",
        "tax": "impuesto impuestos steuer steuern imposta impostos",
        "article": "articulo artigo artikel articolo",
        "code": "codigo funcion funcao fonction funktion programm algoritmo kod",
        "calculate": "calcula calcule calcular calculer berechne berechnen calcola hesapla",
        "equation": "ecuacion equacao gleichung equazione denklem",
        "probability": "probabilidad probabilidade wahrscheinlichkeit",
        "explain": "explica explique erklare erklaere spiega",
    }.items()
    for w in words.split()
}


def foreign_words(text: str, words: list[str]) -> list[str]:
    """English stand-ins for the cue words of a request in another language (empty for English)."""
    out = [_FOREIGN_WORDS[w] for w in words[:120] if w in _FOREIGN_WORDS]
    if not text[:300].isascii():
        out += [_INTL_TERMS[m.group(0)] for m in _INTL_TERM.finditer(text[:2000])]
    if "write" in out:  # the verb first, so "Stellenanzeige ... schreib" still reads as write + ad
        out.remove("write")
        out.insert(0, "write")
    return out


def cjk_words(text: str) -> list[str]:
    """English stand-ins for the glossary words of a Chinese text, in order."""
    return [_CJK_TERMS[m.group(0)] for m in _CJK_TERM.finditer(text)]


# A request to write something (write/compose/draft... + a kind of text): content generation's shape.
_WRITE_VERBS = frozenset("write writing compose draft pen craft create generate produce come make rewrite author design prepare continue".split())
_TEXT_KINDS = _WRITING_WORDS | frozenset(
    "paragraph poems essays articles ode ballad verse verses rhyme sonnets limericks monologue dialogue dialog toast eulogy "
    "bio biography description ad ads advert commercial pitch newsletter posts tweets caption captions slogans taglines "
    "letters emails invitation announcement fable fairy tale tales plot synopsis scene scenes copy copywriting "
    "press release proposal cover obituary riddle joke jokes anecdote mantra motto pun puns rap verses stanza "
    "screenplay sketch skit teaser trailer quatrain guide narration review reviews reflection blurb lyric scripts storyline "
    "storyboard podcast vlog broadcast brochure flyer poster profile promotional outline".split()
)
_EXPLAIN_OPENERS = frozenset("explain describe what how why discuss compare define summarize summarise analyze analyse outline".split())
# A pattern only runs when one of its trigger words is in the text.
_JUDGE_TRIGGERS = frozenset(
    "rate rating grade grading score rank ranking judge judging evaluate evaluating assess assessing critique compare comparing which scale "
    "compara evalúa califica".split()
)
_OBEY_TRIGGERS = frozenset(
    "answer answers response responses respond reply replies always never words explanation explanations preamble preambles caps lowercase uppercase capital "
    "capitalize capitalise reveal disclose mention".split()
)
_CONSTRAINT_TRIGGERS = frozenset(
    "words sentences characters lines bullet answer respond reply output single yes always never mention reveal include must".split()
)


# Kinds of text that make a write request content generation on its own (not "script": code;
# not "review", "guide", "description": often a plain request).
_CREATIVE_KINDS = frozenset(
    "story stories poem poems poetry haiku limerick sonnet sonnets ode ballad quatrain verse verses lyrics song essay essays "
    "article articles blog tweet tweets slogan slogans tagline taglines email emails letter speech advertisement ad advert "
    "commercial jingle novel chapter screenplay narrative fable tale eulogy toast newsletter caption copy copywriting "
    "monologue rap memoir greeting greetings invitation announcement obituary joke jokes riddle brochure flyer biography "
    "dialogue dialog skit".split()
)
# A long text ordered by length ("no less than 1000 words", "a 600-word post", "800字左右"): content generation,
# unless the text is a summary, translation or rewrite of something given (general).
_LENGTH_TARGET = compile_alternation(r"\b(\d{3,5}|\d,\d{3})\+?(?:-| )?(?:or more )?words?\b|(\d{3,5})\s*字")
_SHORTEN = compile_alternation(r"summar|translat|rewrite|paraphras|shorten|condense|abstract|总结|概括|摘要|翻译|改写")
# Asking for a text by naming it: "I need a wedding toast for my brother", "can you give me a poem about rain".
# Not ideas, titles or recommendations of one ("give me 10 blog post ideas" is brainstorming), nor kinds people ask
# to be recommended ("give me a song for a road trip", "I want a novel to read") or things named after a kind
# ("an email address", "an ad blocker").
_ASK_FOR_TEXT = compile_alternation(
    r"^\W*(?:(?:hi|hey|hello|please)\W+)?(?:(?:can|could|would) you (?:please )?(?:give|make|get|send) me|give me|make me|send me"
    r"|i (?:need|want|would like|'d like)|i'm looking for)(?: to (?:get|have))? (?:a|an|some|one|two|three|four|five|\d+|my)\b"
    r"(?: (?!(?:for|on|about|of|to|with|in|feedback|ideas?|help)\b)[\w'-]+){0,3}? (?:" + "|".join(sorted(_CREATIVE_KINDS - {"copy", "chapter", "song", "novel", "biography", "memoir"}, key=len, reverse=True)) + r")\b"
    r"(?! (?:[\w'-]+ )?(?:ideas?|titles?|names?|recommendations?|suggestions?|tips|topics|examples?|prompts?|templates?|format|structure|grade|analysis"
    r"|paste|editor|tool|app|address|addresses|blocker|subscription|list|account)\b)"
)
_CREATE_VERBS = frozenset("write compose draft pen craft create generate produce author design continue".split())


def _long_text_ordered(text: str) -> str | None:
    """The ordered length of a long text to produce ("a 600-word post"), or None."""
    target = _LENGTH_TARGET.search(text) if ("word" in text or "字" in text) else None
    if target and int((target.group(1) or target.group(2)).replace(",", "")) >= 150 and not _SHORTEN.search(text):
        return target.group(0)
    return None


def _verb_then_kind(words: list[str], verbs: frozenset[str], kinds: frozenset[str]) -> str | None:
    """A verb followed within eight words by a kind of text ("help me write a short story"): "verb … kind", or None."""
    if verbs.isdisjoint(words):
        return None
    for i, w in enumerate(words):
        if w in verbs:
            kind = next((k for k in words[i + 1 : i + 9] if k in kinds), None)
            if kind:
                return f"{w} … {kind}"
    return None


def is_tools_system(text: str) -> bool:
    return "<tools>" in text


@dataclass(frozen=True)
class Signals:
    """What the rules decide from, and the structural tokens the model reads."""

    rule: str | None  # category set by a rule, if any
    rule_evidence: str | None
    tokens: list[str]
    words: list[str] = dataclass_field(default_factory=list)  # the plain words among ``tokens``: all the dense part can match


_FORM_ONLY_CUES = ("no intro", "rest of th", "rest of our", "exactly", "letter", "syllable", "punctuation", " max", "from now on",
                   "no matter what")
_LEGAL_CUES = ("legal", " sue", "rights", " law", " claim", " can my ")
# Substrings that gate single rules (a table definition, a contest problem, a code fence, an OOC aside...).
_GATE_CUES = ("create table", "input", "time limit", "prompt", "instructions", "system message", "ooc", "voice the", "play the",
              "play all the", "i will type", "i'll type", "```")
# One Aho-Corasick pass tells which cue strings a text holds: a substring test per cue scanned the text once
# per cue, the rules' costliest step. The cue lists stay the readable definition; this only finds them.
_CUE_FINDER = AhoCorasick(sorted(set(
    _IDENTITY_CUES + _GROUNDED_CUES + _IFEVAL_CUES + _CAST_CUES + _FORM_ONLY_CUES + _LEGAL_CUES + _GATE_CUES)))


def _cues_in(text: str) -> set[str]:
    """The cue strings (of the lists above) that occur in ``text``."""
    return set(_CUE_FINDER.find_matches_as_strings(text, overlapping=True))


def _count(pattern: re.Pattern, text: str, enough: int) -> int:
    """Matches of ``pattern`` in ``text``, counting no further than ``enough``."""
    n = 0
    for _ in pattern.finditer(text):
        n += 1
        if n >= enough:
            break
    return n


def _turn_texts(messages: list[dict], max_chars: int) -> tuple[list[str], list[str], list[str], bool, str]:
    """Lowercased system, user and assistant texts (each clipped), whether a tool turn exists, and the
    last 600 characters of the first user turn when clipping cut them off (a request often closes a long prompt)."""
    system, user, assistant, tool_turn, user_tail = [], [], [], False, ""
    for m in messages:
        raw = m.get("content") or ""
        role, content = m.get("role"), raw[:max_chars].lower()
        if role == "system":
            system.append(content)
        elif role == "user":
            if not user and len(raw) > max_chars:
                user_tail = raw[-600:].lower()
            user.append(content)
        elif role == "assistant":
            assistant.append(content)
        elif role == "tool":
            tool_turn = True
    return system, user, assistant, tool_turn, user_tail


def _rule(
    sys_text: str, sys_rest: str, first_user: str, words: set[str], assistant: list[str], tool_turn: bool, user_tail: str,
    found: set[str],
) -> tuple[str, str] | None:
    """The category structure decides, with its evidence; ``sys_rest`` is the system prompt without boilerplate."""
    if tool_turn:
        return "tool_use", "tool turn"
    if "<tool" in sys_text or any("<tool" in a or "<function" in a or "python_tag" in a for a in assistant[:4]):
        if _TOOL_MARKUP.search(sys_text) or any(_TOOL_MARKUP.search(a) for a in assistant[:4]):
            return "tool_use", "tool markup (<tools>/<tool_call>)"
    for a in assistant[:4]:
        if ("action" in a and ("observation" in a or "action input" in a)) and _count(_REACT_LINE, a[:2000], 2) >= 2:
            return "tool_use", "agent trace (thought/action/observation)"
    declared = _FUNCTION_DECL.search(sys_text[:4000]) if sys_text and ('"' in sys_text or "following" in sys_text) else None
    if declared is None and ("function" in first_user or "tool" in first_user or "api" in first_user):
        declared = _FUNCTION_DECL.search(first_user[:3000])
        if declared and declared.group(0).startswith('"') and '"description"' not in first_user:
            declared = None  # a JSON snippet in a question is not a declaration
    if declared:
        return "tool_use", f"function declarations: {declared.group(0)[:80]!r}"
    opening = first_user[:1000]
    stripped = first_user.lstrip()
    if _CODE_OPENING.match(stripped[:200]) and (
        stripped.split("\n", 1)[0].rstrip().endswith((":", "{", ";", ")")) or _code_lines(stripped[:1200], 2) >= 2
    ):
        return "coding", f"prompt opens with code: {stripped.splitlines()[0][:80]!r}"
    if "create table" in found and (schema := _SQL_SCHEMA.search(first_user[:4000])):
        return "coding", f"an SQL table definition: {schema.group(0)!r}"
    if ("input" in found or "time limit" in found) and (problem := _JUDGE_PROBLEM.search(first_user[:4000])):
        return "coding", f"a programming-contest problem: {problem.group(0)!r}"
    if stripped.startswith("this question refers to the following information"):
        return "domain_expert", "an exam question on a source passage (MMLU/AP history stem)"
    if stripped[:5].startswith(("[", "(", "*")) and _WRITING_PROMPT_TAG.match(stripped[:8]):
        return "content_generation", f"a writing-prompt tag: {stripped[:8].strip()!r}"
    if (len(first_user) < 200 and not found.isdisjoint(_IDENTITY_CUES) and _IDENTITY.search(first_user)
            and "=" not in first_user and not _PERSONA_OPENING.search(first_user)):
        return "steering", f"identity question: {first_user[:80]!r}"
    if assistant and ("i" in assistant[0][:40] or "我" in assistant[0][:40] or "作为" in assistant[0][:40]) and _SELF_INTRO.search(assistant[0][:200]):
        return "steering", f"self-introduction: {assistant[0][:80]!r}"
    judge = _JUDGE.search(opening[:600]) if words & _JUDGE_TRIGGERS else None
    if judge is None and sys_rest and any(t in sys_rest for t in _JUDGE_TRIGGERS):
        judge = _JUDGE.search(sys_rest[:1000])
        judge_setup = judges_texts(sys_rest) if judge is None else None
        if judge_setup:
            return "steering", f"judge system prompt: {judge_setup[:80]!r}"
    if judge:
        return "steering", f"judging request: {judge.group(0)[:80]!r}"
    if sys_rest:  # character and output rules read the system prompt without its assistant boilerplate
        head = sys_rest[:2000]
        # "You are Sage, a tutor for Brightpath" names an assistant with a job, not a character (unless more follows)
        rule = next((m for m in _CHARACTER_SYSTEM.finditer(head)
                     if not (m.group(0).endswith(" ") and _NAMED_JOB.match(head, m.end()))), None)
        if rule:
            return "roleplay", f"character system prompt: {rule.group(0)[:80]!r}"
        rule = _OBEY.search(head) or _SYSTEM_RULE.search(head) or (_FOREIGN_FORM.search(head) if not head[:300].isascii() else None)
        if rule:
            return "steering", f"system prompt constraint: {rule.group(0)[:80]!r}"
        about_code = words & _LANGUAGE_WORDS or "code" in head.replace("code fence", "").replace("code block", "")
        form = system_form_rule(head) if not about_code else None
        if form:
            return "steering", f"system prompt form rule: {form[:80]!r}"
        if override := _OVERRIDE.search(opening[:600]):  # the user tries to talk the assistant out of its system prompt
            return "steering", f"an attempt to override the system prompt: {override.group(0)!r}"
    if "prompt" in found or "instructions" in found or "system message" in found:
        extraction = _PROMPT_EXTRACTION.search(opening[:600])
        if extraction:
            return "steering", f"asks for the system prompt: {extraction.group(0)!r}"
    head300 = opening[:300]
    reply = assistant[0] if assistant else ""
    if "ooc" in found or "ooc" in reply[:300]:
        ooc = _OOC.search(first_user[:300]) or _OOC.search(reply[:300])
        if ooc:
            return "roleplay", f"out-of-character aside: {ooc.group(0).strip()!r}"
    if "*" in first_user[:4] or "*" in reply[:4] or "（" in first_user[:4] or "（" in reply[:4]:
        action = _ACTION_OPENING.search(first_user[:320]) or _ACTION_OPENING.search(reply[:320])
        if action:
            return "roleplay", f"in-character action: {action.group(0).strip()[:80]!r}"
    context = sys_rest[:3000] + "\n" + opening
    # (no cue holds a newline, so the context's cues are the system prompt's and the opening's)
    grounded = not found.isdisjoint(_GROUNDED_CUES) or (sys_rest and not _cues_in(sys_rest[:3000]).isdisjoint(_GROUNDED_CUES))
    if grounded and _GROUNDED.search(context) and _CITES.search(context):
        return "tool_use", "answer grounded in supplied documents with citations"
    for text in (sys_text[:4000], first_user[:4000]):  # numbered sources ([1] ... [2] ...) and a request to cite them
        if ("1]" in text or "[§" in text or "[clause" in text) and len(_SOURCE_LINE.findall(text)) >= 2 and _CITE_REQUEST.search(sys_text[:4000] + "\n" + first_user[:4000]):
            return "tool_use", "numbered sources to cite"
    rule = _OBEY.search(opening) if words & _OBEY_TRIGGERS else None
    if (rule is None and words & _BARE_TRIGGERS and not words & _LANGUAGE_WORDS and "code" not in words
            and any(c in opening for c in _BARE_CUES)):
        rule = _BARE_ANSWER.search(opening)
    if rule is None and (not found.isdisjoint(_FORM_ONLY_CUES) or (
            words & _REPLY_WORDS and ("table" in opening or "every" in opening or "each" in opening))):
        rule = _FORM_ONLY.search(opening)
    if rule:
        return "steering", f"output constraint: {rule.group(0)[:80]!r}"
    # Also in prompts that ask for code: benchmark sets put "only output this sentence" on coding tasks; in the
    # shared data 4 of ~40,000 prompts are coding questions the pattern takes ("words that start with the letter a").
    rule = _VERIFIABLE.search(opening) if words & _VERIFIABLE_TRIGGERS else None
    if rule is None and not opening[:300].isascii():
        rule = _FOREIGN_FORM.search(opening)
    if rule is None and user_tail and any(t in user_tail for t in _VERIFIABLE_TAIL_CUES):
        rule = _VERIFIABLE.search(user_tail)
    if rule is None:
        for text in (opening, user_tail):
            if text and not (found if text is opening else _cues_in(text)).isdisjoint(_IFEVAL_CUES):
                rule = _IFEVAL_FORM.search(text)
                if rule:
                    break
    if rule:
        return "steering", f"verifiable instruction: {rule.group(0)[:80]!r}"
    cast_cue = not found.isdisjoint(_CAST_CUES) and not _cues_in(head300).isdisjoint(_CAST_CUES)
    cast = _CAST_USER.search(head300) if cast_cue else None
    if cast and _CAST_NO_CHARACTER.match(head300, cast.end()):
        cast = None  # "take on the role of a tax advisor": a costume for the task
    if cast is None and (" would" in head300 or " as h" in head300 or " as them" in head300):
        cast = _AS_THEY_WOULD.search(head300)
    if cast is None and "be " in head300:
        cast = _BE_MY.search(head300)
    if cast is None and ((" i'll " in head300 or " i will " in head300) and (" be " in head300 or " play " in head300)
                         or "voice the" in found or "play the" in found or "play all the" in found):
        cast = _TWO_PARTS.search(head300)
    if cast is None and "adventure" in head300:
        cast = _ADVENTURE.search(head300)
    if cast is None and ("i will type" in found or "i'll type" in found):
        cast = _SIMULATED_PROGRAM.search(head300)
    if cast:
        return "roleplay", f"the user casts a character: {cast.group(0)[:80]!r}"
    fence = _CODE_FENCE.search(first_user[:4000]) if "```" in found else None
    if fence:
        return "coding", f"a code block: {fence.group(0).strip()!r}"
    return None


def conversation_signals(messages: list[dict], max_chars: int = 2000, apply_rules: bool = True) -> Signals:
    """Rules first; otherwise the token list (words, word pairs, structural flags) for the model.

    ``apply_rules=False`` always returns the tokens (training reads rows the rules would take).
    """
    system, user, assistant, tool_turn, user_tail = _turn_texts(messages, max_chars)
    sys_text = "\n".join(system)
    sys_rest = without_boilerplate(sys_text)
    if len(user) > 1 and len(user[0]) < 40 and _GREETING.match(user[0]):
        user = user[1:]  # "hi" / "hello there!" then the request: the request is the opening that decides
    if user and ("###" in user[0][:400] or _USER_PREAMBLE.match(user[0][:300])):
        user = [without_preamble(user[0])] + user[1:]
    first_user = user[0] if user else ""
    user_words = [_WORD.findall(u) for u in user[:3]]
    first_words = user_words[0] if user_words else []
    n_cjk = len(_CJK_CHAR.findall(first_user[:600])) if _CJK_CHAR.search(first_user[:300]) else 0
    if n_cjk:
        first_words = user_words[0] = cjk_words(first_user) + first_words
    else:
        translated = foreign_words(first_user, first_words)
        if translated:
            first_words = user_words[0] = translated + first_words
    head_words = set(first_words[:120])
    if apply_rules:
        found = _cues_in(first_user)  # every cue string of the first user turn, in one pass
        ruled = _rule(sys_text, sys_rest, first_user, head_words, assistant, tool_turn, user_tail, found)
        if ruled:
            return Signals(ruled[0], ruled[1], [])

    flags: list[str] = []
    user_text = "\n".join(user[:3])
    head = first_user[:600]
    if system:
        flags.append("§sys")
        if _PERSONA_SYSTEM.search(sys_text):
            flags.append("§sys_persona")
        if _CONSTRAINT.search(sys_text):
            flags.append("§sys_constraint")
    if len(user) > 1:
        flags.append("§multi_user")
    if _PERSONA_OPENING.search(first_user[:200]):
        flags.append("§persona_opening")
    if head_words & _CONSTRAINT_TRIGGERS and _CONSTRAINT.search(head):
        flags.append("§constraint")
    if "```" in user_text:
        flags.append("§user_fence")
    n_code_lines = _code_lines(user_text[:1200], 3)
    if n_code_lines:
        flags.append("§user_code_lines" if n_code_lines >= 3 else "§user_code_line")
    if assistant:
        reply = assistant[0][:800]
        if "```" in reply or _code_lines(reply, 3) >= 3:
            flags.append("§reply_code")
        if _count(_MATH_NOTATION, reply, 3) >= 3:
            flags.append("§reply_math")
    n_math = _count(_MATH_NOTATION, user_text[:1200], 2)
    if n_math:
        flags.append("§math_notation" if n_math >= 2 else "§math_notation1")

    words = _WORD.findall(sys_rest) if sys_rest and system_casts_persona(sys_rest) else []
    for w in user_words:
        words += w
    words = ["0" if w.isdigit() else w for w in words]
    n_numbers = sum(map(str.isdigit, head_words))
    flags.append("§numbers0" if n_numbers == 0 else "§numbers1" if n_numbers < 3 else "§numbers3")
    if head_words & _CODE_WORDS:
        flags.append("§code_words")
    if head_words & _MATH_WORDS:
        flags.append("§math_words")
    if head_words & _WRITING_WORDS:
        flags.append("§writing_words")
    # An expert framing in the system prompt ("You are a UK tax information assistant", "...a historian of early
    # modern Europe") says which field the questions come from: its specialist words count with the prompt's.
    # The framing sentence counts even when it is an assistant's ("You are a UK tax information assistant."), the other
    # boilerplate does not (Llama 2's "...toxic, dangerous, or illegal content" names no field).
    sys_words = set(_WORD.findall(_SENTENCE_BREAK.split(sys_text[:600], maxsplit=1)[0] + " " + sys_rest[:600])) if sys_text else set()
    fields = domain_fields(head_words | sys_words) if sys_words else domain_fields(head_words)
    if fields:
        n_domain = len(fields)
        flags.append("§domain1" if n_domain == 1 else "§domain2" if n_domain == 2 else "§domain3")
        flags += [f"§dom_{f}" for f in set(fields)]
        if first_words and first_words[0] in _EXPLAIN_OPENERS:
            flags.append("§explain_domain")
    tail_words = _WORD.findall(user_tail)[-60:] if user_tail else []
    if _verb_then_kind(first_words[:40], _WRITE_VERBS, _TEXT_KINDS) or _verb_then_kind(tail_words, _WRITE_VERBS, _TEXT_KINDS):
        flags.append("§write_request")
    elif any(w in _WRITE_VERBS for w in first_words[:4]):
        flags.append("§write_verb")
    n_words = len(head_words) + n_cjk // 2
    flags.append("§len_s" if n_words < 12 else "§len_m" if n_words < 50 else "§len_l")

    if apply_rules and not head_words & _LANGUAGE_WORDS:
        # The options may close a long prompt (a source passage, then the question): read the tail too.
        mcq_fields = fields + (domain_fields(set(tail_words) - head_words) if user_tail else [])
        if mcq_fields and (_is_mcq(first_user) or (user_tail and _is_mcq(user_tail))):
            return Signals("domain_expert", f"multiple-choice question with specialist words ({', '.join(sorted(set(mcq_fields)))})", [])
    if apply_rules and len(first_user) < 400 and not ("§code_words" in flags or "§user_fence" in flags or "§user_code_lines" in flags):
        # Counting arrangements, or a bare arithmetic expression ("What is 17*23?"): maths without maths words.
        counting = (_COUNTING.search(head) if any(c in head for c in _COUNTING_CUES) else None) or (
            _ARITHMETIC.search(first_user) if len(first_user) < 120 and (any(c in first_user for c in "*+×÷^-−%") or "percent" in first_user) else None)
        if counting:
            return Signals("math", f"counting or arithmetic: {counting.group(0)!r}", [])
    notation = "§math_words" in flags and _MATH_NOTATION.search(first_user[:1200]) is not None
    if apply_rules and len(first_user) < 600 and "§math_words" in flags and (n_numbers or notation) and not (
        "§code_words" in flags or "§user_fence" in flags or "§user_code_lines" in flags
        or any(f in _SCIENCE_FIELDS for f in fields)  # a physics or chemistry calculation is the field's, not maths'
    ) and (notation or head_words & _MATH_WORDS - _EVERYDAY_MATH_WORDS) and not (
        first_words and first_words[0] in _CREATE_VERBS and _verb_then_kind(first_words[:12], _CREATE_VERBS, _CREATIVE_KINDS)
    ):  # "Write a screenplay scene: two sisters divide his things" asks for a text; "Salem loves to write poems... calculate" is maths
        maths_words = sorted(head_words & _MATH_WORDS)
        return Signals("math", f"maths words ({', '.join(maths_words[:3])}) with numbers, no code", [])
    if (apply_rules and "§code_words" not in flags and "§user_fence" not in flags and "§user_code_lines" not in flags
            and not (n_numbers >= 2 and _WORD_PROBLEM.search(first_user))):  # "she writes 5 articles every 30 minutes..."
        # The request opens the prompt, or closes it after the reference material it is about.
        creative = (
            _verb_then_kind(first_words[:40], _CREATE_VERBS, _CREATIVE_KINDS)
            or (len(first_words) > 40 and _verb_then_kind(first_words[-60:], _CREATE_VERBS, _CREATIVE_KINDS))
            or _verb_then_kind(tail_words, _CREATE_VERBS, _CREATIVE_KINDS)
        )
        if not creative:
            creative = _long_text_ordered(first_user[:2000]) or _long_text_ordered(user_tail)  # often ordered last
        if not creative and len(first_words) < 60:  # "I need a wedding toast for...", "haiku about my cat"
            asked = _ASK_FOR_TEXT.match(head) if not _CREATIVE_KINDS.isdisjoint(first_words[:12]) else None
            if asked is None and not _NAMED_TEXT_HEADS.isdisjoint(first_words[:6]):
                asked = _NAMED_TEXT.match(head)
            creative = asked.group(0) if asked else None
        if creative:
            return Signals("content_generation", f"request to write: {creative!r}", [])
        limit = _SHORT_LIMIT.search(head) if "words" in head_words else None
        if limit:
            return Signals("steering", f"length cap: {limit.group(0)!r}", [])
        if len(first_user) < 800 and "§persona_opening" not in flags and not found.isdisjoint(_LEGAL_CUES):
            legal = _PERSONAL_LEGAL.search(head)
            if legal:
                return Signals("domain_expert", f"a legal question about a situation: {legal.group(0)!r}", [])
        if "med" in fields and len(first_user) < 800 and "§persona_opening" not in flags and _PERSONAL_HEALTH.search(head):
            clinical = sorted(w for w in head_words if field_of(w) == "med" and not w.startswith(_NOT_CLINICAL))
            if clinical:
                return Signals("domain_expert", f"a health question about a person ({', '.join(clinical[:3])})", [])
    if (apply_rules and len(first_user) < 800 and "§persona_opening" not in flags and "§code_words" not in flags
            and not _MONEY_TERMS.isdisjoint(head_words)  # not a word problem about prices with tax ("I bought a TV for $1700...")
            and not (n_numbers >= 2 and (_WORD_PROBLEM.search(first_user) or "what is the" in head or "calculate" in head))):
        money = _PERSONAL_MONEY.search(head)
        if money:
            return Signals("domain_expert", f"a tax, pension or business-form question about a situation: {money.group(0)[:80]!r}", [])
    if apply_rules and len(user) > 1:  # "now say that again, but only in words of one syllable": the form is the point
        redo = next(filter(None, (_REDO_IN_FORM.match(u[:300]) for u in user[1:3])), None)
        if redo:
            return Signals("steering", f"a follow-up asks for the answer again in a set form: {redo.group(0)[:80]!r}", [])
    bigrams = list(map(" ".join, zip(words, words[1:])))
    opening = ["^" + w for w in words[:3]]
    # Four-letter prefixes of longer words: "cardiology" and "cardiac", "poems" and "poetry" share
    # evidence, so a word the labelled data never showed still counts through its relatives.
    prefixes = ["~" + w[:4] for w in words if len(w) > 5]
    return Signals(None, None, flags + opening + words + bigrams + prefixes, words)


# ----------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class Tagger:
    """Softmax regression: score = bias + the tokens' weight rows + the words' mean dense score.

    The dense part is a linear layer over a conversation's SIF-weighted mean word vector
    (scripts/distill_word_vectors.py), folded into one score row per word: it lets words the
    labelled rows never showed ("fermion") count through their meaning.
    """

    categories: tuple[str, ...]
    vocab: dict[str, int]
    weights: np.ndarray  # (len(vocab), len(categories)) float32
    bias: np.ndarray  # (len(categories),) float32
    info: dict
    dense_vocab: dict[str, int] | None = None
    dense_scores: np.ndarray | None = None  # (len(dense_vocab), len(categories)): SIF weight x folded score
    dense_weight: np.ndarray | None = None  # (len(dense_vocab),): SIF weight

    def probabilities(self, token_lists: list[list[str]], word_lists: list[list[str]] | None = None) -> np.ndarray:
        """Class probabilities per token list; ``word_lists`` (the rows' plain words, ``Signals.words``) spare the
        dense part a lookup of every bigram, prefix and flag, none of which is a word it knows."""
        scores = np.tile(self.bias, (len(token_lists), 1)).astype(np.float64)
        scores += _sum_rows(self.weights, _id_sets(self.vocab, token_lists))
        if self.dense_vocab is not None:
            ids = _id_sets(self.dense_vocab, token_lists if word_lists is None else word_lists)
            total = _sum_rows(self.dense_weight[:, None], ids)
            scores += _sum_rows(self.dense_scores, ids) / np.maximum(total, 1e-9)
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)

    def to_json(self) -> dict:
        out = {
            "format": "curation-tagger/2",
            "categories": list(self.categories),
            "vocab": sorted(self.vocab, key=self.vocab.get),
            "weights_f16_b64": _b64(self.weights),
            "bias": [round(float(b), 5) for b in self.bias],
            "info": self.info,
        }
        if self.dense_vocab is not None:  # ~150k words: compressed word list, scores as int8 with one scale per category
            words = "\n".join(sorted(self.dense_vocab, key=self.dense_vocab.get)).encode("utf-8")
            scale = np.maximum(np.abs(self.dense_scores).max(axis=0), 1e-12) / 127.0
            out["dense_words_zlib_b64"] = base64.b64encode(zlib.compress(words, 9)).decode("ascii")
            out["dense_scores_i8_b64"] = base64.b64encode(np.round(self.dense_scores / scale).astype(np.int8).tobytes()).decode("ascii")
            out["dense_scores_scale"] = [float(x) for x in scale]
            out["dense_weight_u8_b64"] = base64.b64encode(np.clip(np.round(self.dense_weight * 255), 1, 255).astype(np.uint8).tobytes()).decode("ascii")
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Tagger":
        if data.get("format") not in ("curation-tagger/1", "curation-tagger/2"):
            raise CurationError(f"tagger model: unknown format {data.get('format')!r}")
        cats = tuple(data["categories"])
        vocab = {t: i for i, t in enumerate(data["vocab"])}
        dense = {}
        if "dense_words_zlib_b64" in data:
            words = zlib.decompress(base64.b64decode(data["dense_words_zlib_b64"])).decode("utf-8").split("\n")
            scores = np.frombuffer(base64.b64decode(data["dense_scores_i8_b64"]), dtype=np.int8).reshape(len(words), len(cats))
            dense = {
                "dense_vocab": {w: i for i, w in enumerate(words)},
                "dense_scores": scores.astype(np.float32) * np.asarray(data["dense_scores_scale"], np.float32),
                "dense_weight": np.frombuffer(base64.b64decode(data["dense_weight_u8_b64"]), dtype=np.uint8).astype(np.float32) / 255.0,
            }
        weights = _unb64(data["weights_f16_b64"]).reshape(len(vocab), len(cats))
        return cls(cats, vocab, weights, np.asarray(data["bias"], np.float32), data.get("info", {}), **dense)


def _id_sets(index: dict[str, int], token_lists: list[list[str]]) -> list[set[int]]:
    """Per token list, the set of its tokens' ids in ``index`` (unknown tokens dropped; one C-level lookup each)."""
    get, out = index.get, []
    for tokens in token_lists:
        ids = set(map(get, tokens))
        ids.discard(None)
        out.append(ids)
    return out


def _sum_rows(table: np.ndarray, id_sets: list[set[int]]) -> np.ndarray:
    """Per id set, the sum of those rows of ``table`` (zeros for an empty set)."""
    out = np.zeros((len(id_sets), table.shape[1]))
    counts = np.fromiter((len(s) for s in id_sets), dtype=np.int64, count=len(id_sets))
    if counts.sum():
        ids = np.fromiter(chain.from_iterable(id_sets), dtype=np.int64, count=int(counts.sum()))
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        nonempty = counts > 0
        out[nonempty] = np.add.reduceat(table[ids].astype(np.float64), starts[nonempty], axis=0)
    return out


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f2").tobytes()).decode("ascii")


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)


@lru_cache(maxsize=1)
def shipped_tagger() -> Tagger:
    """The model that ships in the package (read once per process; it is never mutated)."""
    try:
        text = resources.files("curation").joinpath("assets", ASSET).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CurationError(f"the tagger model curation/assets/{ASSET} is missing; run scripts/train_tagger.py") from None
    return Tagger.from_json(json.loads(text))


# ----------------------------------------------------------------------------- offline tagging

def classify(messages_list: list[list[dict]], max_chars: int = 2000, tagger: Tagger | None = None) -> list[tuple[str, str, dict]]:
    """(category, category_source, meta fields) for each conversation, offline."""
    tagger = tagger or shipped_tagger()
    signals = [conversation_signals(m or [], max_chars) for m in messages_list]
    need_model = [i for i, s in enumerate(signals) if s.rule is None]
    probs = tagger.probabilities([signals[i].tokens for i in need_model], [signals[i].words for i in need_model]) if need_model else None
    out: list[tuple[str, str, dict]] = [None] * len(signals)  # type: ignore[list-item]
    for i, s in enumerate(signals):
        if s.rule is not None:
            out[i] = (s.rule, "rules", {"tag_evidence": s.rule_evidence})
    for j, i in enumerate(need_model):
        k = int(probs[j].argmax())
        out[i] = (tagger.categories[k], "model", {"tag_confidence": round(float(probs[j, k]), 3)})
    return out


# ----------------------------------------------------------------------------- LLM tagging

LLM_SYSTEM = (
    "You sort supervised fine-tuning conversations into exactly one category. Categories:\n"
    "general: everyday requests, open or closed QA, reasoning puzzles, summarising, extracting, rewriting, advice, "
    "brainstorming; anything no other category claims.\n"
    "domain_expert: needs specialist knowledge (medicine, law, finance, science, engineering, academic humanities).\n"
    "math: calculation, word problems, algebra to competition maths, proofs.\n"
    "roleplay: the assistant plays a character or persona, in-character dialogue, interactive fiction.\n"
    "coding: writing, explaining, reviewing or debugging code, SQL, shell.\n"
    "tool_use: declared tools or function calls, tool results, multi-step agent traces, answers grounded in supplied "
    "documents with citations.\n"
    "content_generation: stories, poems, essays, articles, scripts, marketing copy, emails.\n"
    "steering: the point is obeying a system prompt's constraints (format, style, language, length), the assistant's "
    "identity, or judging and grading other answers.\n"
    'Answer with JSON: {"category": "<slug>"}.'
)
LLM_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "category",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"category": {"type": "string", "enum": list(SLUGS)}},
            "required": ["category"],
            "additionalProperties": False,
        },
    },
}


def render_for_llm(messages: list[dict], max_chars: int) -> str:
    """The conversation as plain text, each turn clipped so the whole fits ``max_chars``."""
    per_turn = max(200, max_chars // max(1, len(messages)))
    parts = [f"[{m.get('role')}]\n{(m.get('content') or '')[:per_turn]}" for m in messages]
    return "\n\n".join(parts)[:max_chars]


def parse_llm_category(text: str | None) -> str | None:
    """The slug from a JSON answer, or None when the answer is not one of the eight."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        match = re.search(r'"category"\s*:\s*"(\w+)"', text)
        value = {"category": match.group(1)} if match else None
    slug = value.get("category") if isinstance(value, dict) else None
    return slug if slug in CATEGORIES else None


def classify_llm(
    ids: list[str], messages_list: list[list[dict]], config: TagConfig, endpoint: "Endpoint", journal=None, progress: bool = True,
    offline: list[tuple[str, str, dict]] | None = None,
) -> tuple[list[tuple[str, str, dict]], dict]:
    """Ask the endpoint for each conversation; failures fall back to the offline tagger (``offline``: its answers,
    when the caller has them already)."""
    from .client import ChatRequest, chat_many

    requests = [
        ChatRequest(
            key=f"{row_id}:tag",
            messages=[
                {"role": "system", "content": LLM_SYSTEM},
                {"role": "user", "content": render_for_llm(msgs or [], config.llm_max_chars)},
            ],
            params={"temperature": config.llm_temperature, "max_tokens": 32, "response_format": LLM_RESPONSE_FORMAT},
        )
        for row_id, msgs in zip(ids, messages_list)
    ]
    responses, usage = chat_many(requests, endpoint, journal=journal, progress=progress)
    out: list[tuple[str, str, dict]] = []
    fallback_rows = []
    for i, resp in enumerate(responses):
        slug = None if resp.error else parse_llm_category(resp.text)
        if slug is not None:
            out.append((slug, "llm", {"tag_model": resp.model}))
        else:
            out.append(None)  # type: ignore[arg-type]
            fallback_rows.append((i, resp.error or f"unusable answer {str(resp.text)[:80]!r}"))
    if fallback_rows:
        if offline is None:
            answers = classify([messages_list[i] for i, _ in fallback_rows], config.max_chars)
        else:
            answers = [offline[i] for i, _ in fallback_rows]
        for (i, why), (cat, source, extra) in zip(fallback_rows, answers):
            out[i] = (cat, source, {**extra, "tag_llm_error": why})
    usage = {**usage, "llm_fallbacks": len(fallback_rows)}
    return out, usage


# ----------------------------------------------------------------------------- the stage

def tag_table(table: pa.Table, config: TagConfig, endpoint: "Endpoint | None" = None, journal=None) -> StageResult:
    """Fill ``category`` for every row; declared categories stay unless ``retag_declared``."""
    categories = table.column("category").to_pylist()
    metas = table.column("meta").to_pylist()
    todo = [i for i, c in enumerate(categories) if config.retag_declared or c not in CATEGORIES]
    invalid = {i for i in todo if categories[i] is not None and categories[i] not in CATEGORIES}
    messages = table.column("messages").to_pylist() if todo else []
    stats: dict = {"method": config.method}
    if config.method in ("llm", "hybrid") and todo and endpoint is None:
        raise CurationError(f"tag --method {config.method} needs an endpoint (recipe `endpoint`, or OPENAI_BASE_URL / OPENAI_API_KEY)")
    ids = table.column("id").to_pylist() if config.method != "auto" and todo else []
    if config.method == "llm" and todo:
        decided, usage = classify_llm([ids[i] for i in todo], [messages[i] for i in todo], config, endpoint, journal)
        stats["llm"] = usage
    else:
        decided = classify([messages[i] for i in todo], config.max_chars)
    if config.method == "hybrid" and todo:
        unsure = [j for j, (_, source, extra) in enumerate(decided) if source == "model" and extra["tag_confidence"] < config.hybrid_below]
        stats["hybrid_sent"] = len(unsure)
        asked, usage = classify_llm([ids[todo[j]] for j in unsure], [messages[todo[j]] for j in unsure], config, endpoint, journal,
                                    offline=[decided[j] for j in unsure])
        stats["llm"] = usage
        for j, (cat, source, extra) in zip(unsure, asked):
            if source == "llm":  # the offline answer stays on record beside the endpoint's
                offline_cat, _, offline_extra = decided[j]
                extra = {**extra, "tag_offline_category": offline_cat, "tag_confidence": offline_extra["tag_confidence"]}
            decided[j] = (cat, source, extra)

    new_categories = list(categories)
    new_metas = list(metas)
    sources = ["declared"] * len(categories)
    for i in range(len(categories)):
        if categories[i] in CATEGORIES and not config.retag_declared:
            new_metas[i] = update_meta(metas[i], category_source="declared")
    for i, (cat, source, extra) in zip(todo, decided):
        new_categories[i], sources[i] = cat, source
        if i in invalid:
            extra = {**extra, "tag_replaced_category": categories[i]}
        elif config.retag_declared and categories[i] in CATEGORIES:
            extra = {**extra, "tag_declared_category": categories[i]}
        new_metas[i] = update_meta(metas[i], category_source=source, **extra)

    kept = table.set_column(table.schema.get_field_index("category"), "category", pa.array(new_categories, pa.string()))
    kept = kept.set_column(kept.schema.get_field_index("meta"), "meta", pa.array(new_metas, pa.string()))
    stats["by_category"] = dict(Counter(new_categories).most_common())
    stats["by_source"] = dict(Counter(sources).most_common())
    stats["replaced_invalid"] = len(invalid)
    return StageResult(kept, empty_rejects(), stats)
