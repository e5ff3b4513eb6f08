"""ULMFiT word tokenizer: fastai v2's text rules and spaCy-English word splitting on a Rust `tokenizers` backend.

Pipeline (same order and output as fastai's ``Tokenizer(SpacyTokenizer('en'))`` with the default rules):

1. fastai's pre-rules ``fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces,
   replace_all_caps, replace_maj, lowercase`` as compiled regular expressions (in Python: they need
   back-references and counts that ``tokenizers`` normalizers cannot express);
2. spaCy-English-like word splitting (whitespace handling, prefixes, suffixes, infixes, URLs and the English
   tokenizer exceptions), memoised per whitespace-delimited chunk, then fastai's ``replace_space`` post-rule;
3. the words, joined by single spaces, go in one batch to the Rust backend (``CharDelimiterSplit(" ")``
   pre-tokenizer, ``WordLevel`` or ``Unigram`` model, a post-processor that prepends ``xxbos``).

The saved ``tokenizer.json`` therefore maps fastai-tokenized text (tokens joined by spaces, fastai's on-disk
format) to ids on its own; raw text needs this class, which ``save_pretrained`` ships as remote code.

Offsets would refer to the rule-processed text and cost the Rust backend as much as the lookup itself, so they
are only computed when asked for (``return_offsets_mapping=True``); without them the backend's offset-free
encoder runs and ``BatchEncoding.tokens()``/``word_ids()`` are empty: use ``tokenize`` or
``convert_ids_to_tokens`` to see tokens.

The English punctuation classes and tokenizer exceptions below follow spaCy's English defaults (spaCy, MIT
licence, (c) ExplosionAI GmbH), restricted to what can occur in fastai's lowercased text.

This module must only import the standard library, ``tokenizers`` and ``transformers`` (it is copied next to
saved tokenizers and loaded with ``trust_remote_code=True``).
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import BatchEncoding, TokenizersBackend
from transformers.tokenization_utils_base import TruncationStrategy
from transformers.utils import PaddingStrategy

UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = SPECIAL_TOKENS = (
    "xxunk xxpad xxbos xxeos xxfld xxrep xxwrep xxup xxmaj".split()
)
FAKE = "xxfake"
_SPECIAL_SET = frozenset(SPECIAL_TOKENS)

# ----------------------------------------------------------------------------------------------------------
# fastai v2 pre-rules (fastai/text/core.py), re-expressed for speed with identical output.
# ----------------------------------------------------------------------------------------------------------
_HTML_FIXES = (
    ("#39;", "'"),
    ("amp;", "&"),
    ("#146;", "'"),
    ("nbsp;", " "),
    ("#36;", "$"),
    ("\\n", "\n"),
    ("quot;", "'"),
    ("<br />", "\n"),
    ('\\"', '"'),
    ("<unk>", UNK),
    (" @.@ ", "."),
    (" @-@ ", "-"),
    ("...", " …"),
)
_RE_REP_ANY = re.compile(r"(.)\1\1", re.S)
_RE_REP = re.compile(r"(\S)(\1{2,})")
_RE_WREP_ANY = re.compile(r"\s(\w++)\s++\1\s++\1")
_RE_WREP_START = re.compile(r"(\w++)\s++\1\s++\1")
_RE_WREP = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")
_RE_SPACES = re.compile(" {2,}")
# A token of 2+ chars, all caps (fastai: `[A-Z]+[^a-z\s]*`) -> insert `xxup` (lowercasing happens at the end).
_RE_ALL_CAPS = re.compile(r"[A-Z](?<!\S[A-Z])(?=[^a-z\s]++(?!\S))")
# A Capitalised token that replace_all_caps left alone, i.e. containing a lowercase ASCII letter -> `xxmaj`.
_RE_MAJ = re.compile(r"[A-Z](?<!\S[A-Z])(?=[^A-Z\s]*?[a-z][^A-Z\s]*+(?!\S))")
# A whitespace run other than one plain space: spaCy turns it into a token (minus a leading plain space).
_RE_WS_RUN = re.compile(r"[^\S ]\s*")


def fix_html(text: str) -> str:
    """fastai's ``fix_html``: undo common HTML/wiki escapes, then ``html.unescape``."""
    for old, new in _HTML_FIXES:
        text = text.replace(old, new)
    return html.unescape(text)


def _rep(match: re.Match) -> str:
    char, rest = match.groups()
    return f" {TK_REP} {len(rest) + 1} {char} "


def _wrep(match: re.Match) -> str:
    word, reps, end = match.groups()
    return f" {TK_WREP} {len(reps.split()) + 2} {word} {end}"


def _up(match: re.Match) -> str:
    return f"{TK_UP} {match[0]}"


def _maj(match: re.Match) -> str:
    return f"{TK_MAJ} {match[0]}"


def apply_rules(text: str) -> str:
    """Apply fastai v2's default pre-rules, except that ``xxbos`` is left to the post-processor."""
    text = fix_html(text)
    if _RE_REP_ANY.search(text):
        text = _RE_REP.sub(_rep, text)
    if _RE_WREP_ANY.search(text) or _RE_WREP_START.match(text):
        text = _RE_WREP.sub(_wrep, text)
    if "/" in text or "#" in text or "\\" in text:
        text = text.replace("/", " / ").replace("#", " # ").replace("\\", " \\ ")
    if "  " in text:
        text = _RE_SPACES.sub(" ", text)
    text = _RE_ALL_CAPS.sub(_up, text)
    text = _RE_MAJ.sub(_maj, text)
    return text.lower().strip()


# ----------------------------------------------------------------------------------------------------------
# spaCy English tokenizer rules (spacy/lang/punctuation.py, char_classes.py, en/tokenizer_exceptions.py).
# Text reaching them is lowercased, so "upper-case letters" are only the scripts without case.
# ----------------------------------------------------------------------------------------------------------
_LETTER = r"[^\W\d_]"
_UNCASED = (
    r"A-Z\u0591-\u05F4\u0620-\u06FF\u0900-\u0DFF\u1100-\u11FF\u1200-\u137F\u3040-\u30FF\u3400-\u4DBF"
    r"\u4E00-\u9FFF\uAC00-\uD7AF\uF900-\uFAFF"
)
_PUNCT = r"… …… , : ; \! \? ¿ ؟ ¡ \( \) \[ \] \{ \} < > _ # \* & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪".split()
_QUOTES = r"\' \" ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 〈 〉 ⟦ ⟧".split()
_CURRENCY = (r"\$ £ € ¥ ฿ US\$ C\$ A\$ ₽ ﷼ ₴ ₠ ₡ ₢ ₣ ₤ ₥ ₦ ₧ ₨ ₩ ₪ ₫ € ₭ ₮ ₯ ₰ ₱ ₲ ₳ ₴ ₵ ₶ ₷ ₸ ₹ ₺ ₻ ₼ ₽ ₾ ₿").split()
_UNITS = (
    "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h kmh "
    "mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² см³ мм мм² мм³ "
    "нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тбكم كم² كم³ م م² م³ سم سم² سم³ مم مم² "
    "مم³ كم غرام جرام جم كغ ملغ كوب اكواب"
).split()
_HYPHENS = "-|–|—|--|---|——|~"
_ELLIPSES = [r"\.\.+", "…"]
_URL = re.compile(
    r"^(?:[\w+\-.]{2,}://)?(?:\S+(?::\S*)?@)?"
    r"(?:(?!(?:10|127)(?:\.\d{1,3}){3})(?!(?:169\.254|192\.168)(?:\.\d{1,3}){2})"
    r"(?!172\.(?:1[6-9]|2\d|3[0-1])(?:\.\d{1,3}){2})(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])"
    r"(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}(?:\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4]))"
    r"|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?[A-Za-z0-9\u00a1-\uffff]\.)+"
    r"(?:" + _LETTER + r"{2,63}))(?::\d{2,5})?(?:[/?#]\S*)?$"
)


@functools.cache
def _icons() -> str:
    """Character-class body of the Unicode 'Symbol, other' characters (spaCy's LIST_ICONS: emoji, dingbats)."""
    ranges: list[list[int]] = []
    for code in range(0x20000):
        if unicodedata.category(chr(code)) == "So":
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


@functools.cache
def _affix_regexes() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """Compile spaCy-English prefix, suffix and infix searches (alternatives in spaCy's order)."""
    icons = f"[{_icons()}]"
    quotes = "".join(_QUOTES)
    punct_chars = "|".join(_PUNCT)
    prefixes = ["§", "%", "=", "—", "–", r"\+(?![0-9])", *_PUNCT, *_ELLIPSES, *_QUOTES, *_CURRENCY, icons]
    suffixes = [
        *_PUNCT,
        *_ELLIPSES,
        *_QUOTES,
        icons,
        "'s",
        "'S",
        "’s",
        "’S",
        "—",
        "–",
        r"(?<=[0-9])\+",
        r"(?<=°[FfCcKk])\.",
        r"(?<=[0-9])(?:{})".format("|".join(_CURRENCY)),
        r"(?<=[0-9])(?:{})".format("|".join(_UNITS)),
        rf"(?<={_LETTER}|[0-9%²\-\+{punct_chars}(?:{quotes})])\.",
        rf"(?<=[{_UNCASED}][{_UNCASED}])\.",
    ]
    infixes = [
        *_ELLIPSES,
        icons,
        r"(?<=[0-9])[+\-\*^](?=[0-9-])",
        rf"(?<={_LETTER}|[{quotes}])\.(?=[{_UNCASED}{quotes}])",
        rf"(?<={_LETTER}),(?={_LETTER})",
        rf"(?<={_LETTER}|[0-9])(?:{_HYPHENS})(?={_LETTER})",
        rf"(?<={_LETTER}|[0-9])[:<>=/](?={_LETTER})",
    ]
    return (
        re.compile("|".join("^" + p for p in prefixes)),
        re.compile("|".join(p + "$" for p in suffixes)),
        re.compile("|".join(infixes)),
    )


# spaCy's English tokenizer exceptions that can match lowercased text and change its tokens: "key tok tok ..."
# entries separated by two spaces; a key alone means "keep as one token".
_EXCEPTIONS = r"""
''  'bout  'cause  'cos  'coz  'cuz  'd  'em  'll  'nuff  're  's  (*_*)  (-8  (-:  (-;  (-_-)  (._.)
(:  (;  (=  (>_<)  (^_^)  (o:  (¬_¬)  (ಠ_ಠ)  (╯°□°）╯︵┻━┻  )-:  ):  ._.  10a.m. 10 a.m.  10am 10 am
10p.m. 10 p.m.  10pm 10 pm  11a.m. 11 a.m.  11am 11 am  11p.m. 11 p.m.  11pm 11 pm  12a.m. 12 a.m.
12am 12 am  12p.m. 12 p.m.  12pm 12 pm  1a.m. 1 a.m.  1am 1 am  1p.m. 1 p.m.  1pm 1 pm  2a.m. 2 a.m.
2am 2 am  2p.m. 2 p.m.  2pm 2 pm  3a.m. 3 a.m.  3am 3 am  3p.m. 3 p.m.  3pm 3 pm  4a.m. 4 a.m.  4am 4 am
4p.m. 4 p.m.  4pm 4 pm  5a.m. 5 a.m.  5am 5 am  5p.m. 5 p.m.  5pm 5 pm  6a.m. 6 a.m.  6am 6 am
6p.m. 6 p.m.  6pm 6 pm  7a.m. 7 a.m.  7am 7 am  7p.m. 7 p.m.  7pm 7 pm  8)  8-)  8a.m. 8 a.m.  8am 8 am
8p.m. 8 p.m.  8pm 8 pm  9a.m. 9 a.m.  9am 9 am  9p.m. 9 p.m.  9pm 9 pm  :'(  :')  :'-(  :'-)  :(  :((
:(((  :()  :)  :))  :)))  :*  :-(  :-((  :-(((  :-)  :-))  :-)))  :-*  :-/  :-0  :-3  :->  :-]  :-o  :-p
:-x  :-|  :-}  :/  :0  :1  :3  :>  :]  :o  :o)  :p  :x  :|  :}  :’(  :’)  :’-(  :’-)  ;)  ;-)  ;_;  <.<
</3  <3  <33  <333  <space>  =(  =)  =/  =3  =[  =]  =|  >.<  >.>  >:(  >:o  ><(((*>  [-:  [:  [=  \")
]=  a.  a.m.  ain't ai n't  aint ai nt  ain’t ai n’t  and/or  aren't are n't  arent are nt
aren’t are n’t  b.  c'mon c'm on  c.  can't ca n't  can't've ca n't 've  cannot can not  cant ca nt
cantve ca nt ve  can’t ca n’t  can’t’ve ca n’t ’ve  co.  could've could 've  couldn't could n't
couldn't've could n't 've  couldnt could nt  couldntve could nt ve  couldn’t could n’t
couldn’t’ve could n’t ’ve  couldve could ve  could’ve could ’ve  c’mon c’m on  d.  daren't dare n't
darent dare nt  daren’t dare n’t  didn't did n't  didn't've did n't 've  didnt did nt  didntve did nt ve
didn’t did n’t  didn’t’ve did n’t ’ve  doesn't does n't  doesn't've does n't 've  doesnt does nt
doesntve does nt ve  doesn’t does n’t  doesn’t’ve does n’t ’ve  doin'  doin’  don't do n't
don't've do n't 've  dont do nt  dontve do nt ve  don’t do n’t  don’t’ve do n’t ’ve  e.  e.g.  f.  g.
goin'  goin’  gonna gon na  gotta got ta  h.  hadn't had n't  hadn't've had n't 've  hadnt had nt
hadntve had nt ve  hadn’t had n’t  hadn’t’ve had n’t ’ve  hasn't has n't  hasnt has nt  hasn’t has n’t
haven't have n't  havent have nt  haven’t have n’t  havin'  havin’  he'd he 'd  he'd've he 'd 've
he'll he 'll  he'll've he 'll 've  hed he d  hedve he d ve  hellve he ll ve  hes he s  he’d he ’d
he’d’ve he ’d ’ve  he’ll he ’ll  he’ll’ve he ’ll ’ve  how'd how 'd  how'd've how 'd 've
how'd'y how 'd 'y  how'll how 'll  how'll've how 'll 've  how're how 're  how've how 've  howd how d
howdve how d ve  howll how ll  howllve how ll ve  howre how re  hows how s  howve how ve  how’d how ’d
how’d’ve how ’d ’ve  how’d’y how ’d ’y  how’ll how ’ll  how’ll’ve how ’ll ’ve  how’re how ’re
how’ve how ’ve  i'd i 'd  i'd've i 'd 've  i'll i 'll  i'll've i 'll 've  i'm i 'm  i'ma i 'm a
i've i 've  i.  i.e.  id i d  idve i d ve  illve i ll ve  im i m  ima i m a  isn't is n't  isnt is nt
isn’t is n’t  it'd it 'd  it'd've it 'd 've  it'll it 'll  it'll've it 'll 've  itd it d  itdve it d ve
itll it ll  itllve it ll ve  it’d it ’d  it’d’ve it ’d ’ve  it’ll it ’ll  it’ll’ve it ’ll ’ve  ive i ve
i’d i ’d  i’d’ve i ’d ’ve  i’ll i ’ll  i’ll’ve i ’ll ’ve  i’m i ’m  i’ma i ’m a  i’ve i ’ve  j.  k.  l.
lovin'  lovin’  m.  mayn't may n't  mayn't've may n't 've  maynt may nt  mayntve may nt ve
mayn’t may n’t  mayn’t’ve may n’t ’ve  might've might 've  mightn't might n't  mightn't've might n't 've
mightnt might nt  mightntve might nt ve  mightn’t might n’t  mightn’t’ve might n’t ’ve  mightve might ve
might’ve might ’ve  must've must 've  mustn't must n't  mustn't've must n't 've  mustnt must nt
mustntve must nt ve  mustn’t must n’t  mustn’t’ve must n’t ’ve  mustve must ve  must’ve must ’ve  n.
needn't need n't  needn't've need n't 've  neednt need nt  needntve need nt ve  needn’t need n’t
needn’t’ve need n’t ’ve  not've not 've  nothin'  nothin’  notve not ve  not’ve not ’ve  nuthin'
nuthin’  o.  ol'  ol’  oughtn't ought n't  oughtn't've ought n't 've  oughtnt ought nt
oughtntve ought nt ve  oughtn’t ought n’t  oughtn’t’ve ought n’t ’ve  p.  p.m.  q.  r.  s.
shan't sha n't  shan't've sha n't 've  shant sha nt  shantve sha nt ve  shan’t sha n’t
shan’t’ve sha n’t ’ve  she'd she 'd  she'd've she 'd 've  she'll she 'll  she'll've she 'll 've
shedve she d ve  shellve she ll ve  shes she s  she’d she ’d  she’d’ve she ’d ’ve  she’ll she ’ll
she’ll’ve she ’ll ’ve  should've should 've  shouldn't should n't  shouldn't've should n't 've
shouldnt should nt  shouldntve should nt ve  shouldn’t should n’t  shouldn’t’ve should n’t ’ve
shouldve should ve  should’ve should ’ve  somethin'  somethin’  t.  that'd that 'd
that'd've that 'd 've  that'll that 'll  that'll've that 'll 've  thatd that d  thatdve that d ve
thatll that ll  thatllve that ll ve  thats that s  that’d that ’d  that’d’ve that ’d ’ve
that’ll that ’ll  that’ll’ve that ’ll ’ve  there'd there 'd  there'd've there 'd 've  there'll there 'll
there'll've there 'll 've  there're there 're  there've there 've  thered there d  theredve there d ve
therell there ll  therellve there ll ve  therere there re  theres there s  thereve there ve
there’d there ’d  there’d’ve there ’d ’ve  there’ll there ’ll  there’ll’ve there ’ll ’ve
there’re there ’re  there’ve there ’ve  these'd these 'd  these'd've these 'd 've  these'll these 'll
these'll've these 'll 've  these're these 're  these've these 've  thesed these d  thesedve these d ve
thesell these ll  thesellve these ll ve  thesere these re  theseve these ve  these’d these ’d
these’d’ve these ’d ’ve  these’ll these ’ll  these’ll’ve these ’ll ’ve  these’re these ’re
these’ve these ’ve  they'd they 'd  they'd've they 'd 've  they'll they 'll  they'll've they 'll 've
they're they 're  they've they 've  theyd they d  theydve they d ve  theyll they ll  theyllve they ll ve
theyre they re  theyve they ve  they’d they ’d  they’d’ve they ’d ’ve  they’ll they ’ll
they’ll’ve they ’ll ’ve  they’re they ’re  they’ve they ’ve  this'd this 'd  this'd've this 'd 've
this'll this 'll  this'll've this 'll 've  thisd this d  thisdve this d ve  thisll this ll
thisllve this ll ve  thiss this s  this’d this ’d  this’d’ve this ’d ’ve  this’ll this ’ll
this’ll’ve this ’ll ’ve  those'd those 'd  those'd've those 'd 've  those'll those 'll
those'll've those 'll 've  those're those 're  those've those 've  thosed those d  thosedve those d ve
thosell those ll  thosellve those ll ve  thosere those re  thoseve those ve  those’d those ’d
those’d’ve those ’d ’ve  those’ll those ’ll  those’ll’ve those ’ll ’ve  those’re those ’re
those’ve those ’ve  u.  v.  v.s.  vs.  w.  w/o  wasn't was n't  wasnt was nt  wasn’t was n’t  we'd we 'd
we'd've we 'd 've  we'll we 'll  we'll've we 'll 've  we're we 're  we've we 've  wed we d
wedve we d ve  wellve we ll ve  weren't were n't  werent were nt  weren’t were n’t  weve we ve
we’d we ’d  we’d’ve we ’d ’ve  we’ll we ’ll  we’ll’ve we ’ll ’ve  we’re we ’re  we’ve we ’ve
what'd what 'd  what'd've what 'd 've  what'll what 'll  what'll've what 'll 've  what're what 're
what've what 've  whatd what d  whatdve what d ve  whatll what ll  whatllve what ll ve  whatre what re
whats what s  whatve what ve  what’d what ’d  what’d’ve what ’d ’ve  what’ll what ’ll
what’ll’ve what ’ll ’ve  what’re what ’re  what’ve what ’ve  when'd when 'd  when'd've when 'd 've
when'll when 'll  when'll've when 'll 've  when're when 're  when've when 've  whend when d
whendve when d ve  whenll when ll  whenllve when ll ve  whenre when re  whens when s  whenve when ve
when’d when ’d  when’d’ve when ’d ’ve  when’ll when ’ll  when’ll’ve when ’ll ’ve  when’re when ’re
when’ve when ’ve  where'd where 'd  where'd've where 'd 've  where'll where 'll
where'll've where 'll 've  where're where 're  where've where 've  whered where d  wheredve where d ve
wherell where ll  wherellve where ll ve  wherere where re  wheres where s  whereve where ve
where’d where ’d  where’d’ve where ’d ’ve  where’ll where ’ll  where’ll’ve where ’ll ’ve
where’re where ’re  where’ve where ’ve  who'd who 'd  who'd've who 'd 've  who'll who 'll
who'll've who 'll 've  who're who 're  who've who 've  whod who d  whodve who d ve  wholl who ll
whollve who ll ve  whos who s  whove who ve  who’d who ’d  who’d’ve who ’d ’ve  who’ll who ’ll
who’ll’ve who ’ll ’ve  who’re who ’re  who’ve who ’ve  why'd why 'd  why'd've why 'd 've  why'll why 'll
why'll've why 'll 've  why're why 're  why've why 've  whyd why d  whydve why d ve  whyll why ll
whyllve why ll ve  whyre why re  whys why s  whyve why ve  why’d why ’d  why’d’ve why ’d ’ve
why’ll why ’ll  why’ll’ve why ’ll ’ve  why’re why ’re  why’ve why ’ve  won't wo n't  won't've wo n't 've
wont wo nt  wontve wo nt ve  won’t wo n’t  won’t’ve wo n’t ’ve  would've would 've  wouldn't would n't
wouldn't've would n't 've  wouldnt would nt  wouldntve would nt ve  wouldn’t would n’t
wouldn’t’ve would n’t ’ve  wouldve would ve  would’ve would ’ve  x.  y'all y' all  y.  yall y all
you'd you 'd  you'd've you 'd 've  you'll you 'll  you'll've you 'll 've  you're you 're  you've you 've
youd you d  youdve you d ve  youll you ll  youllve you ll ve  youre you re  youve you ve  you’d you ’d
you’d’ve you ’d ’ve  you’ll you ’ll  you’ll’ve you ’ll ’ve  you’re you ’re  you’ve you ’ve  y’all y’ all
z.  ä.  ö.  ü.  ‘s  ’bout  ’cause  ’cos  ’coz  ’cuz  ’d  ’em  ’ll  ’nuff  ’re  ’s  ’’
"""


@functools.cache
def _exceptions() -> dict[str, tuple[str, ...]]:
    """Parse the exception table: chunk -> its tokens."""
    table = {}
    for entry in _EXCEPTIONS.replace("\n", "  ").split("  "):
        if entry:
            key, *tokens = entry.split(" ")
            table[key] = tuple(tokens) or (key,)
    return table


def _strip_affixes(chunk: str, specials: dict) -> tuple[list[str], str, list[str]]:
    """spaCy's ``_split_affixes``: peel prefixes and suffixes until nothing changes or a special case is hit."""
    prefix_re, suffix_re, _ = _affix_regexes()
    prefixes: list[str] = []
    suffixes: list[str] = []
    last_size = 0
    while chunk and len(chunk) != last_size:
        if chunk in specials:
            break
        last_size = len(chunk)
        match = prefix_re.search(chunk)
        pre_len = match.end() if match else 0
        if pre_len and chunk[pre_len:] in specials:
            prefixes.append(chunk[:pre_len])
            chunk = chunk[pre_len:]
            break
        match = suffix_re.search(chunk[pre_len:])
        suf_len = match.end() - match.start() if match else 0
        if suf_len and chunk[:-suf_len] in specials:
            suffixes.append(chunk[-suf_len:])
            chunk = chunk[:-suf_len]
            break
        if pre_len and suf_len and pre_len + suf_len <= len(chunk):
            prefixes.append(chunk[:pre_len])
            suffixes.append(chunk[-suf_len:])
            chunk = chunk[pre_len:-suf_len]
        elif pre_len:
            prefixes.append(chunk[:pre_len])
            chunk = chunk[pre_len:]
        elif suf_len:
            suffixes.append(chunk[-suf_len:])
            chunk = chunk[:-suf_len]
    return prefixes, chunk, suffixes


def _split_infixes(core: str) -> list[str]:
    """spaCy's infix step: cut ``core`` around infix matches (a match at position 0 is ignored)."""
    pieces, start = [], 0
    for match in _affix_regexes()[2].finditer(core):
        begin, end = match.span()
        if begin == 0:
            continue
        if begin != start:
            pieces.append(core[start:begin])
        if begin != end:
            pieces.append(core[begin:end])
        start = end
    if core[start:]:
        pieces.append(core[start:])
    return pieces


def split_chunk(chunk: str, specials: dict | None = None) -> list[str]:
    """Tokenize one whitespace-free chunk like spaCy's English tokenizer (``specials={}`` disables exceptions)."""
    specials = _exceptions() if specials is None else specials
    if chunk in specials:
        return list(specials[chunk])
    prefixes, core, suffixes = _strip_affixes(chunk, specials)
    if not core:
        middle = []
    elif core in specials:
        middle = list(specials[core])
    elif _URL.match(core):
        middle = [core]
    else:
        middle = _split_infixes(core)
    tokens = prefixes + middle + suffixes[::-1]
    return _merge_special_spans(tokens) if specials and len(tokens) > 1 else tokens


@functools.cache
def _special_spans() -> dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
    """Exceptions that the affix rules split (e.g. ``:)``): first piece -> [(pieces, exception tokens)]."""
    spans: dict[str, list] = {}
    for key, tokens in _exceptions().items():
        pieces = tuple(split_chunk(key, {}))
        if len(pieces) > 1:
            spans.setdefault(pieces[0], []).append((pieces, tokens))
    for candidates in spans.values():
        candidates.sort(key=lambda c: -len(c[0]))
    return spans


def _merge_special_spans(tokens: list[str]) -> list[str]:
    """spaCy's ``_apply_special_cases``: re-tokenize runs of tokens that spell an exception (longest first)."""
    spans, out, i = _special_spans(), [], 0
    while i < len(tokens):
        for pieces, replacement in spans.get(tokens[i], ()):
            if tuple(tokens[i : i + len(pieces)]) == pieces:
                out.extend(replacement)
                i += len(pieces)
                break
        else:
            out.append(tokens[i])
            i += 1
    return out


class _ChunkCache(dict):
    """Memo: whitespace-free chunk (or whitespace token) -> its tokens joined by spaces."""

    max_size = 500_000

    def __missing__(self, chunk: str) -> str:
        if any(c.isspace() for c in chunk):  # a whitespace token made by _ws_token: keep it whole
            value = chunk
        else:
            value = " ".join(split_chunk(chunk))
        if len(self) >= self.max_size:
            self.clear()
        self[chunk] = value
        return value


_CACHE = _ChunkCache()


def _ws_token(match: re.Match) -> str:
    """A whitespace run becomes a ``▁``-for-space token; a plain space right before it stays a separator."""
    start, token = match.start(), match[0].replace(" ", "▁")
    return f"{token} " if match.string[start - 1] == " " else f" {token} "


def fastai_tokenize(text: str) -> str:
    """Rules + spaCy-like splitting + ``replace_space``: fastai's tokens (without ``xxbos``) joined by spaces."""
    text = apply_rules(text)
    if _RE_WS_RUN.search(text):
        text = _RE_WS_RUN.sub(_ws_token, text)
    return " ".join(map(_CACHE.__getitem__, text.split(" ")))


# ----------------------------------------------------------------------------------------------------------
# Detokenization for decode().
# ----------------------------------------------------------------------------------------------------------
_RE_DETOK_SPACE = re.compile(r" (?=[.,!?;:%)\]}…]|n't\b|'(?:s|m|re|ve|d|ll)\b)|(?<=[(\[{$#]) ")


def _restore_case(tokens: Sequence[str]) -> list[str]:
    """Apply ``xxmaj`` (capitalise) and ``xxup`` (upper-case) to the token that follows them."""
    out: list[str] = []
    for tok in tokens:
        if out and out[-1] in (TK_MAJ, TK_UP) and tok not in _SPECIAL_SET:
            out[-1] = tok[:1].upper() + tok[1:] if out[-1] == TK_MAJ else tok.upper()
        else:
            out.append(tok)
    return out


def detokenize(tokens: Sequence[str]) -> str:
    """Readable text from fastai tokens: ``xxmaj``/``xxup`` restore case, ``xxrep``/``xxwrep`` expand."""
    tokens = _restore_case(tokens)
    words: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in (TK_REP, TK_WREP) and i + 2 < len(tokens) and tokens[i + 1].isdigit():
            count, unit = int(tokens[i + 1]), tokens[i + 2]
            words.append(unit * count if tok == TK_REP else " ".join([unit] * count))
            i += 3
        else:
            words.append(tok)
            i += 1
    text = " ".join(w.replace("▁", " ") for w in words if w != FAKE and not w.startswith(FAKE + " "))
    return _RE_DETOK_SPACE.sub("", text)


def _pieces_to_words(pieces: Sequence[str]) -> list[str]:
    """Unigram pieces -> words: ``▁`` starts a word, special tokens stand alone, other pieces continue a word."""
    words: list[str] = []
    glue = False
    for piece in pieces:
        if piece in _SPECIAL_SET:
            words.append(piece)
            glue = False
        elif piece.startswith("▁") or not glue:
            words.append(piece[1:] if piece.startswith("▁") else piece)
            glue = True
        else:
            words[-1] += piece
    return words


# ----------------------------------------------------------------------------------------------------------
# The transformers tokenizer.
# ----------------------------------------------------------------------------------------------------------
def make_vocab(counts: Counter, min_freq: int = 3, max_vocab: int = 60000) -> list[str]:
    """fastai's ``make_vocab``: frequent tokens, special tokens first, ``xxfake`` padding to a multiple of 8."""
    vocab = [tok for tok, count in counts.most_common(max_vocab) if count >= min_freq]
    for tok in reversed(SPECIAL_TOKENS):
        if tok in vocab:
            vocab.remove(tok)
        vocab.insert(0, tok)
    vocab = vocab[:max_vocab]
    return vocab + [FAKE] * (8 - len(vocab) % 8)


def _unique_names(itos: Sequence[str]) -> dict[str, int]:
    """token -> id keeping every id; repeated entries get names with a space, which no text can produce."""
    vocab: dict[str, int] = {}
    for idx, tok in enumerate(itos):
        name, k = tok, 0
        while name in vocab:
            k += 1
            name = f"{tok} {k}"
        vocab[name] = idx
    return vocab


def _word_backend(itos: Sequence[str]) -> Tokenizer:
    backend = Tokenizer(models.WordLevel(vocab=_unique_names(itos), unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.CharDelimiterSplit(" ")
    return backend


def _unigram_backend(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(" ", behavior="removed"), pre_tokenizers.Metaspace(split=False)]
    )
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), unk_token=UNK, show_progress=False
    )
    words = (" ".join(w for w in fastai_tokenize(t).split(" ") if w not in _SPECIAL_SET) for t in texts)
    backend.train_from_iterator(words, trainer=trainer)
    return backend


class AwdLstmTokenizer(TokenizersBackend):
    """fastai/ULMFiT-compatible tokenizer (fastai v2 rules, spaCy English words, ``xxbos`` first).

    Build one with :meth:`from_texts` or :meth:`from_fastai_vocab`, save it with ``save_pretrained`` and
    reload it with ``AutoTokenizer.from_pretrained``. Ids: ``xxunk=0 xxpad=1 xxbos=2 xxeos=3 xxfld=4 xxrep=5
    xxwrep=6 xxup=7 xxmaj=8``. With ``is_split_into_words=True`` the input words are taken as finished fastai
    tokens and only looked up.
    """

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    @classmethod
    def _from_backend(cls, backend: Tokenizer, **kwargs) -> AwdLstmTokenizer:
        specials = [AddedToken(t, special=True, normalized=False, single_word=True) for t in (UNK, PAD, BOS, EOS)]
        backend.add_special_tokens(specials)
        return cls(
            tokenizer_object=backend,
            unk_token=UNK,
            pad_token=PAD,
            bos_token=BOS,
            eos_token=EOS,
            add_bos_token=True,
            add_eos_token=False,
            clean_up_tokenization_spaces=False,
            **kwargs,
        )

    @classmethod
    def from_fastai_vocab(cls, itos: Sequence[str], **kwargs) -> AwdLstmTokenizer:
        """Word-level tokenizer over a fastai ``itos`` list; every id is kept (``len(tokenizer) == len(itos)``)."""
        missing = [tok for tok in SPECIAL_TOKENS if tok not in itos]
        if missing:
            raise ValueError(f"the vocabulary lacks fastai's special tokens {missing}")
        return cls._from_backend(_word_backend(list(itos)), **kwargs)

    @classmethod
    def from_texts(
        cls,
        texts: Iterable[str],
        max_vocab: int = 60000,
        min_freq: int = 3,
        model: str = "word",
        **kwargs,
    ) -> AwdLstmTokenizer:
        """Build the vocabulary from raw texts.

        ``model="word"``: fastai's ``make_vocab`` (tokens seen at least ``min_freq`` times, at most ``max_vocab``,
        special tokens first, ``xxfake`` padding to a multiple of 8). ``model="unigram"``: a unigram subword
        model of ``max_vocab`` pieces (MultiFiT used 15000) trained on the rule-processed words; ``min_freq``
        is unused.
        """
        if model == "unigram":
            return cls._from_backend(_unigram_backend(texts, max_vocab), **kwargs)
        if model != "word":
            raise ValueError(f"model must be 'word' or 'unigram', not {model!r}")
        counts: Counter = Counter()
        for text in texts:
            counts[BOS] += 1
            counts.update(fastai_tokenize(text).split(" "))
        counts.pop("", None)
        return cls._from_backend(_word_backend(make_vocab(counts, min_freq, max_vocab)), **kwargs)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """Tokens of ``text`` (and ``pair``) as the backend produces them."""
        kwargs["return_offsets_mapping"] = True
        return super().tokenize(text, pair=pair, add_special_tokens=add_special_tokens, **kwargs)

    def fastai_tokens(self, text: str) -> list[str]:
        """fastai's token list for ``text``, ``xxbos`` included."""
        body = fastai_tokenize(text)
        return [BOS, *body.split(" ")] if body else [BOS]

    def _prepare(self, text):
        if isinstance(text, str):
            return fastai_tokenize(text)
        if isinstance(text, (list, tuple)):
            return [self._prepare(t) for t in text]
        return text

    def _encode_plus(self, text, text_pair=None, is_split_into_words: bool = False, **kwargs) -> BatchEncoding:
        plain = isinstance(text, str) or (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text))
        if plain and text_pair is None and not is_split_into_words and not kwargs.get("sanitize_control_tokens"):
            return self._encode_texts(text, **kwargs)
        if not is_split_into_words:
            text, text_pair = self._prepare(text), self._prepare(text_pair)
        return super()._encode_plus(text, text_pair, is_split_into_words=is_split_into_words, **kwargs)

    def _encode_texts(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        truncation_strategy: TruncationStrategy = TruncationStrategy.DO_NOT_TRUNCATE,
        max_length: int | None = None,
        stride: int = 0,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors=None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        **kwargs,
    ) -> BatchEncoding:
        """Raw texts: fastai rules and word splitting in Python, then one batched call to the Rust backend."""
        texts = [text] if isinstance(text, str) else list(text)
        self.set_truncation_and_padding(
            padding_strategy, truncation_strategy, max_length, stride, pad_to_multiple_of, padding_side
        )
        split = self.split_special_tokens if split_special_tokens is None else split_special_tokens
        self._tokenizer.encode_special_tokens = split
        # Offsets (relative to the rule-processed text) cost as much as the lookup: only compute them on demand.
        encode = self._tokenizer.encode_batch if return_offsets_mapping else self._tokenizer.encode_batch_fast
        encodings = encode(list(map(fastai_tokenize, texts)), add_special_tokens=add_special_tokens)
        rows = [
            self._convert_encoding(
                e,
                return_token_type_ids=return_token_type_ids,
                return_attention_mask=return_attention_mask,
                return_overflowing_tokens=return_overflowing_tokens,
                return_special_tokens_mask=return_special_tokens_mask,
                return_offsets_mapping=return_offsets_mapping,
                return_length=return_length,
            )
            for e in encodings
        ]
        keys = rows[0][0] if rows else self.model_input_names
        data = {key: [v for row, _ in rows for v in row[key]] for key in keys}
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = [i for i, (row, _) in enumerate(rows) for _ in row["input_ids"]]
        for ids in data["input_ids"]:
            self._eventual_warn_about_too_long_sequence(ids, max_length, verbose)
        if isinstance(text, str) and return_tensors is None and not return_overflowing_tokens:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, [e for _, row in rows for e in row], tensor_type=return_tensors)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Readable text from tokens (see :func:`detokenize`)."""
        if isinstance(self._tokenizer.model, models.Unigram):
            tokens = _pieces_to_words(tokens)
        return detokenize(tokens)

    def _decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces=None, **kwargs):
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        tokens = self.convert_ids_to_tokens([int(i) for i in token_ids], skip_special_tokens=skip_special_tokens)
        return self.convert_tokens_to_string([t for t in tokens if t is not None])


AwdLstmTokenizer.register_for_auto_class("AutoTokenizer")
