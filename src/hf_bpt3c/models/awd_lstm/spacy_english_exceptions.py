"""spaCy's English tokenizer exceptions (spacy/lang/en/tokenizer_exceptions.py; spaCy, MIT licence,
(c) ExplosionAI GmbH), restricted to the entries that can match fastai's lowercased text and change its tokens.

Data only (no imports): it is copied next to saved tokenizers with `tokenization_awd_lstm.py`.
"""

# spaCy's English tokenizer exceptions that can match lowercased text and change its tokens: "key tok tok ..."
# entries separated by two spaces; a key alone means "keep as one token".
EXCEPTIONS = r"""
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
