"""Rule-based parts of enrichment: social entities (hashtags, handles, cashtags, URLs) and risk tags.

Risk and intent tags come from small multilingual term lists, each tag carrying the span that
triggered it; they are deliberately transparent (a brand team can read why a tag is there).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from earful.core.errors import ConfigError
from earful.core.vocabulary import MAX_ENTITY_CHARS, SYNTAX_ENTITY_TYPES, TAGS

RISK_RULES_VERSION = "earful-risk-rules@4"
#: The one tag found from a sentence's shape (a question asked) rather than from a term list.
QUESTION_TAG = "customer_question"

SOCIAL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]]")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d_]\w*")),
    ("mention", re.compile(r"(?<![\w@])@\w{1,30}")),
    ("cashtag", re.compile(r"(?<![\w$])\$[A-Za-z]{1,6}(?![\w])")),
)

# Plain complaints carry no negative word: a customer reports what failed them ("can't log in",
# "took my money twice", "card declined", "still waiting for the refund") or says they are leaving.
# These cues of a service failing its customer, an unmet expectation or churn are not a tag of their
# own (a neutral report of an outage is `operational`, not `complaint`), but together with the
# complaint and operational patterns they tell the sentiment model that the text reports a failure
# of the service (`complaint_cue`). Languages: en, es, de, fr, pt, it, ar and romanised Hindi.
SERVICE_FAILURE_CUES: tuple[str, ...] = (
    # en
    r"(?:can't|cant|cannot|can not|couldn't|unable to) (?:log ?in|sign ?in|login|access|connect|pay|get through|open|withdraw)",
    (r"(?:won't|wont|doesn't|does not|didn't|did not|isn't|is not|aren't|hasn't|has not|haven't|never) "
    r"(?:load(?:ing)?|open(?:ing)?|work(?:ing)?|start(?:ing)?|connect(?:ing)?|arrived?|shown up|turn(?:ed)? up|"
    r"been (?:delivered|refunded|fixed|answered)|heard back|got (?:it|my \w+) back)"),
    r"(?:card|payment|transaction|transfer)s? (?:was |were |got |keeps? getting |keeps? being )?(?:declined|rejected|refused|bounced)",
    r"declined (?:again|at the \w+)", r"(?:charged|billed|debited|took my money) (?:me )?(?:twice|two times|double|again|for nothing)",
    r"double[- ]charged", r"overcharged", r"took my money", r"(?:bill|invoice|charge)s? (?:is |was )?(?:double|twice)",
    r"(?:still|been) (?:pending|processing|stuck|waiting|on hold)", r"on hold for", r"(?:asked|waiting|waited) for (?:a|my) refund",
    r"(?:where(?:'s| is) my|no|still no) (?:refund|money|order|package|parcel|bag|luggage|reply|answer|response)",
    r"no ?(?:one|body) (?:has )?(?:picked up|answered|replied|responded|called (?:me )?back|came|showed up|told me)",
    r"without (?:any )?(?:notice|warning|telling (?:me|us))", r"(?:logs?|logged|kicks?|kicked|throws?) me out",
    r"stopped working", r"keeps (?:crashing|freezing|spinning|dropping|failing|disconnecting|logging me out)",
    r"(?:was|were|are|is) missing from", r"half (?:of )?(?:the|my) \w+ (?:was|were) missing", r"(?:still|again) the same (?:error|problem|issue)",
    r"(?:cancel|close|end) my (?:account|subscription|contract|membership|plan)",
    r"(?:switching|moving|going|changing) to (?:another|a different|a new) (?:bank|provider|airline|carrier|company|operator|network)",
    r"(?:thinking (?:of|about)|considering) (?:leaving|switching|moving|cancell?ing|changing)",
    r"(?:arrived|came|delivered|got here) (?:\w+ )?(?:days?|weeks?) late", r"arrived after (?:\w+|\d+) (?:days|weeks)",
    r"(?:wasn't|was not|weren't|were not|isn't|is not) ready", r"(?:was|were) (?:supposed|meant|due) to (?:arrive|come|be)",
    r"should have (?:arrived|come|been)", r"didn't make it", r"no ?(?:one|body) can tell me", r"drops (?:every|all the time)",
    r"wiped (?:out )?(?:all )?my", r"(?:bill|invoice|price)s? (?:has |have )?doubled", r"(?:after|took) (?:\w+|\d+) (?:days|weeks)",
    # es
    r"no (?:puedo|me deja|pude|consigo) (?:entrar|acceder|iniciar sesi[oó]n|pagar|conectar(?:me)?|darme de baja)",
    r"no (?:carga|abre|funciona|lleg[oó]|ha llegado|vino|me deja)", r"(?:me |nos )?(?:cobraron|cobran|cobr[oó]) (?:dos veces|doble|de m[aá]s)",
    r"(?:me )?(?:rechazaron|rechaz[oó]) (?:la|mi) tarjeta", r"tarjeta rechazada", r"sigue pendiente", r"sin (?:internet|se[ñn]al|luz|servicio|respuesta)",
    r"nadie (?:atiende|contesta|responde|me (?:avis[oó]|dice|da))", r"(?:todav[ií]a|a[uú]n) (?:nada|no)", r"sin avisar",
    r"(?:me siguen|siguen) cobrando", r"(?:darme|dar(?:se)?) de baja", r"cambiarme de (?:compa[ñn][ií]a|banco|operador)",
    r"(?:lleg[oó]|me lleg[oó]) (?:el pedido )?incompleto", r"tard[oó] \w+ d[ií]as", r"ninguna soluci[oó]n", r"no (?:estaba|est[aá]) lista",
    r"se (?:queda colgad[ao]|cuelga|corta)", r"me saca de la sesi[oó]n", r"deb[ií]a (?:llegar|venir|estar)",
    r"(?:factura|cuenta|recibo) .{0,25}(?:el doble|doble)", r"(?:despu[eé]s de|tard[oó]) \w+ (?:d[ií]as|semanas)",
    # de
    r"(?:komme|kommt|kam) nicht (?:in|rein|durch)", r"(?:lädt|startet|öffnet|funktioniert|geht) (?:seit \w+ )?(?:nicht|gar nicht|nicht mehr)",
    r"(?:zweimal|doppelt) (?:abgebucht|berechnet|belastet)", r"(?:karte|zahlung) (?:\w+ )?abgelehnt", r"keiner geht ran",
    r"niemand (?:geht ran|meldet sich|hat bescheid)", r"(?:bis heute|immer noch) (?:nichts|keine?)", r"ohne (?:info|vorwarnung|ankündigung)",
    r"(?:trotzdem|weiterhin|noch) (?:\w+ )?abgebucht", r"kündigen", r"anbieter zu wechseln", r"fehlte", r"keine lösung",
    r"nicht fertig", r"bricht .{0,20}ab", r"loggt mich aus", r"warteschleife", r"hängt (?:seit|auf|beim)", r"kein (?:internet|netz|empfang)",
    r"sollte .{0,25}(?:kommen|ankommen|da sein)", r"rechnung .{0,30}doppelt", r"abgelehnt", r"nach der kündigung",
    r"nach \w+ (?:tagen|wochen)",
    # fr
    r"impossible de (?:me connecter|payer|se connecter|résilier|joindre)", r"ne (?:se charge|s'ouvre|marche|fonctionne) (?:plus|pas)",
    r"débité (?:deux fois|en double)", r"carte refusée", r"personne ne (?:décroche|répond|m'a prévenu)", r"toujours (?:rien|aucune?|pas)",
    r"sans prévenir", r"(?:encore|toujours) prélevé", r"résilier", r"changer d'opérateur", r"(?:manquait|manquaient)", r"aucune solution",
    r"pas prête?", r"me déconnecte", r"(?:plus|pas) d'(?:internet|électricité|eau|réseau)", r"en attente depuis", r"n'est (?:jamais|pas) (?:venu|arrivé)e?",
    r"(?:commande|livraison|colis) prévue?", r"(?:facture|prix) .{0,20}doublé", r"en attente", r"(?:après|au bout de) \w+ (?:jours|semaines)",
    # pt
    r"n[aã]o (?:consigo|deixa|abre|carrega|funciona|chegou|veio|estava pront[oa])", r"cobra(?:ram|m|ndo) (?:duas vezes|em dobro|a mais)",
    r"continuam cobrando", r"cart[aã]o recusado", r"ningu[eé]m (?:atende|responde|avisou)", r"(?:at[eé] agora|ainda) nada", r"sem avisar",
    r"sem (?:internet|sinal|luz|resposta)", r"(?:mudar|trocar) de (?:operadora|banco)", r"nenhuma solu[cç][aã]o", r"pendente desde",
    r"trava na hora", r"me desloga", r"quero cancelar", r"era (?:pra|para) (?:chegar|vir|estar)",
    r"(?:conta|fatura) .{0,25}(?:o dobro|dobrou)", r"depois de \w+ (?:dias|semanas)",
    # it
    r"non (?:riesco|si carica|si apre|funziona|mi (?:permette|fa)|è arrivat[oa]|era pront[oa]|è venuto)", r"addebitat[oa] due volte",
    r"(?:carta|pagamento) rifiutat[oa]", r"nessuno (?:risponde|mi ha avvisato)", r"(?:ancora|finora) niente", r"senza avvisare",
    r"senza (?:internet|segnale|luce|risposta)", r"(?:mi addebitano|continuano ad addebitare) ancora", r"disdire", r"cambiare operatore",
    r"nessuna soluzione", r"in sospeso", r"mi disconnette", r"(?:mancava|mancavano)", r"doveva (?:arrivare|essere|venire)",
    r"(?:bolletta|fattura) .{0,30}doppio", r"dopo \w+ (?:giorni|settimane)",
    # ar
    r"لا (?:يفتح|يعمل|أستطيع|يسمح|يرد|أحد)", r"لم (?:يصل|تصل|يأت|تكن|يخبرني|يرد)", r"مرتين", r"رفضوا بطاقتي", r"معلق", r"بدون (?:إنترنت|إبلاغ|إشعار)",
    r"ما زالوا", r"ما في (?:أي )?حل", r"توقف عن العمل", r"ناقصة", r"ينقطع", r"إلغاء الاشتراك", r"أغير الشركة",
    r"(?:إلى|حتى) الآن لا شيء", r"المفروض", r"ضعف", r"بعد \w+ (?:أيام|أسابيع)", r"[وف]?ما في (?:أي )?حل",
    # hi (romanised)
    r"(?:nahi|nahin|nhi) (?:khul|chal|ho|aaya|aayi|pahuncha|pahunchi|mila|mili|utha)(?: \w+)?", r"do baar (?:paise|payment)",
    r"paise (?:kaat|kat) (?:liye|rahe|gaye)", r"decline ho gaya", r"koi (?:utha|jawab|solution|reply)(?: \w+)? nahi", r"hold pe",
    r"ab tak (?:kuch )?nahi", r"bina bataye", r"(?:band|cancel) karna", r"kharab ho gaya", r"company badalne", r"atak jaati",
    r"pending hai", r"aana tha", r"(?:nahi|nahin|nhi) hai", r"aaya hi nahi", r"ready nahi", r"din baad aaya",
)

# Each tag is a list of patterns (regular-expression fragments, matched case-insensitively on
# whole words). Written from the label rules in bench/data/risk_intent/README.md; languages:
# en, es, de, fr, pt, it. A pattern is a fragment, so inflections are written out (`cancel+ed`).
RISK_PATTERNS: dict[str, tuple[str, ...]] = {
    "legal_privacy": (
        r"data (?:breach|leak)\w*", r"breach(?:es|ed)?", r"(?:data|privacy|security) (?:incident|nightmare|disaster)",
        r"(?:customer|personal|passenger) (?:data|records|files|details)", r"personal data", r"passwords? (?:were |was )?leaked",
        r"leaked (?:customer|personal|passwords?|data)", r"(?:account|details) (?:were |was )?(?:exposed|hacked)",
        r"hacked", r"hacking", r"exposed in a (?:breach|security incident)", r"privacy", r"gdpr", r"lawsuits?",
        r"sue[sd]?", r"suing", r"class action", r"talking to a lawyer", r"lawyers?", r"patent infringement",
        r"without (?:my |their )?consent", r"selling (?:customer|location|personal) (?:data|records)",
        # es
        r"filtraci[oó]n(?: de datos)?", r"datos personales", r"demandas?", r"demandan", r"demanda colectiva",
        r"hackead[oa]s?", r"denuncia", r"sin consentimiento",
        # de
        r"datenlecks?", r"datenschutz\w*", r"klagen?", r"sammelklage", r"verklagen", r"gehackt", r"anwalt",
        r"persönliche daten",
        # fr
        r"fuite de données", r"données personnelles", r"plaintes?(?: collective)?", r"porte plainte", r"pirat[ée]e?s?",
        r"poursuivent", r"en justice", r"rgpd",
        # pt
        r"vazamento(?: de dados)?", r"dados pessoais", r"a[cç][aã]o coletiva", r"hackead[ao]s?", r"processo",
        # it
        r"violazione dei dati", r"dati personali", r"hackerat[oa]", r"far[oò] causa", r"class action",
    ),
    "regulatory": (
        r"regulators?", r"regulatory", r"watchdog", r"fined", r"fines", r"(?:a|an|the) (?:[$€£][\d.,]+\s?\w*\s)?fine",
        r"[$€£][\d.,]+\s?(?:m|bn|k|million|billion)? fine", r"investigat\w+", r"probe", r"compliance", r"ftc", r"sec",
        r"ico", r"authority", r"competition authority", r"consumer protection", r"settlement", r"sanction\w*",
        r"charged .{0,40} with", r"orders? .{0,40}to refund", r"central bank", r"anti-money laundering", r"recall ordered",
        r"food (?:safety|standards) (?:authority|agency)", r"blocks? .{0,30}takeover",
        # es
        r"regulador\w*", r"multas?", r"investigaci[oó]n", r"investiga", r"sanciona\w*", r"cnmc", r"bruselas investiga",
        # de
        r"behörden?", r"bußgeld", r"ermittel\w*", r"ermittlung\w*", r"bundeskartellamt", r"bundesnetzagentur",
        r"eu-kommission prüft", r"aufsicht\w*",
        # fr
        r"régulateur", r"amendes?", r"enquête", r"autorité de la concurrence", r"cnil", r"condamn[ée]e?",
        # pt
        r"investiga[cç][aã]o", r"procon", r"anpd", r"multad[oa]",
        # it
        r"antitrust", r"indagine", r"multa",
    ),
    "operational": (
        r"outages?", r"(?:is|are|'s|was|were|went|go(?:es)?|been|be) down", r"down (?:again|for|since|across|at)",
        r"not working", r"doesn't work", r"isn't working", r"cancell?ed", r"delayed", r"delays?", r"stranded",
        r"system failure", r"crash(?:ed|es|ing)?(?! course)", r"grounded", r"degraded performance", r"timing out",
        r"failing", r"payments? fail\w*", r"recalls?", r"recalled", r"pulls? .{0,40}from (?:the )?shelves",
        r"running out of stock", r"out of stock", r"strike", r"(?:no|without) (?:internet|signal|service|power)",
        r"fault", r"fix the outage", r"offline",
        # es
        r"ca[ií]da", r"se ha ca[ií]do", r"se cae", r"cancelad[oa]s?", r"retrasad[oa]s?", r"retrasos?",
        r"llama a revisi[oó]n", r"no funciona", r"ca[ií]do",
        # de
        r"ausfall", r"systemausfall", r"störung", r"großstörung", r"gestrichen", r"verspätet", r"stürzt .{0,30}ab",
        r"ruft .{0,40}zurück", r"offline", r"(?:auch|wieder) down",
        # fr
        r"en panne", r"pannes?", r"annul[ée]e?s?", r"retard[ée]e?s?", r"plante", r"rappelle",
        # pt
        r"fora do ar", r"caiu", r"atrasad[oa]s?", r"recall", r"falha no sistema", r"falha",
        # it
        r"disservizio", r"cancellat[oa]", r"non funziona", r"richiama", r"in ritardo",
    ),
    "reputational": (
        r"boycott\w*", r"scandal\w*", r"disgrace\w*", r"shame on", r"shameful", r"#delete\w+",
        r"trending for all the wrong reasons", r"under fire", r"accused of", r"greenwashing", r"racis[mt]\w*",
        r"sexist", r"forced labou?r", r"telling everyone", r"tell(?:ing)? (?:everyone|all my friends)",
        r"avoid this (?:airline|company|brand|bank|hotel)", r"walk out", r"protests?", r"viral", r"crisis mode",
        r"hid (?:\w+ )?(?:test results|emissions)", r"mocking",
        # es
        r"boicot\w*", r"esc[aá]ndalo", r"qu[eé] verg[üu]enza", r"acusad[oa] de", r"blanqueo ecol[oó]gico",
        r"no vuelen con ellos", r"explotar a sus trabajadores",
        # de
        r"boykott\w*", r"skandal", r"schämt euch", r"in der kritik", r"greenwashing", r"zwangsarbeit",
        r"rate allen ab",
        # fr
        r"scandale", r"la honte", r"appels? au boycott", r"sous le feu des critiques", r"accusé de",
        r"travail forcé", r"tout le monde de les éviter",
        # pt
        r"boicote", r"esc[aâ]ndalo", r"trabalho escravo", r"todo mundo evitar",
        # it
        r"boicottate", r"scandalo", r"che vergogna", r"lavoro forzato",
    ),
    "complaint": (
        r"terrible", r"awful", r"unacceptable", r"disappointed", r"disappointing", r"complaint", r"horrible",
        r"ridiculous", r"worst", r"disgusting", r"not impressed", r"waste of money", r"fed up", r"rude",
        r"nobody (?:answers|has called|at the desk)", r"no(?:body| one) (?:answers|calls? back|replies)",
        r"never (?:staying|flying|again)", r"still waiting", r"no refund", r"charged (?:me )?twice",
        r"charged my card twice", r"thanks for nothing", r"so embarrassing", r"🙄", r"keeps hanging up",
        r"lost my (?:luggage|bag)", r"arrived broken", r"took \d+ (?:days|weeks)", r"kept my car",
        r"drained my battery", r"never agreed", r"without any explanation", r"i can't pay",
        r"(?:was|were) (?:cold|dirty|broken)", r"everything ruined", r"froze on", r"so disappointed",
        # es
        r"inaceptable", r"fatal", r"p[eé]sim[oa]", r"el peor", r"la peor", r"indignante", r"nadie contesta",
        r"nunca m[aá]s", r"una verg[üu]enza", r"lleg[oó] rot[oa]", r"sucia", r"maleducado",
        # de
        r"unverschämt", r"frechheit", r"inakzeptabel", r"enttäuscht", r"schlechteste\w*", r"unmöglich",
        r"niemand antwortet", r"nie wieder", r"kam kaputt an", r"dreckig", r"unfreundlich",
        # fr
        r"inadmissible", r"honteux", r"déçue?", r"le pire", r"scandaleux", r"déplorable", r"aucune réponse",
        r"plus jamais", r"arrivé cassé", r"chambre sale", r"désagréable", r"quelle honte",
        # pt
        r"absurdo", r"que vergonha", r"decepcionad[oa]", r"ningu[eé]m responde", r"p[eé]ssim[oa]", r"pior",
        r"nunca mais", r"chegou quebrado", r"sujo", r"grossa?",
        # it
        r"vergognoso", r"pessimo", r"peggior[e]?", r"inaccettabile", r"nessuno risponde", r"arrivato rotto",
        r"deluso",
    ),
    "purchase_intent": (
        r"(?:want|going|gonna|plan(?:ning)?|ready|need) to (?:buy|book|order|sign up|purchase|switch)",
        r"thinking of (?:buying|switching|getting)", r"should i buy", r"where can i buy", r"book a (?:flight|test drive)",
        r"sign(?:ed)? up", r"take my money", r"pre-?order\w*", r"buy \w+ (?:\w+ )?in bulk",
        r"gonna buy", r"going to buy", r"planning to migrate", r"evaluating", r"^booking", r"ordering one",
        r"probably going to buy", r"looking for a new", r"want to order", r"deals\?",
        # es
        r"quiero comprar", r"pensando en comprar", r"d[oó]nde puedo comprar", r"voy a contratar", r"voy a comprar",
        # de
        r"will \w+ kaufen", r"will den .{0,30}kaufen", r"wollen .{0,40}kaufen", r"überlege,? zu .{0,20}zu wechseln",
        r"kaufen",
        # fr
        r"je veux acheter", r"(?:on|nous) va acheter", r"je pense passer chez", r"acheter",
        # pt
        r"quero comprar", r"vamos comprar", r"pensando em mudar", r"comprar",
        # it
        r"voglio comprare", r"stiamo per acquistare", r"acquistare",
    ),
}

# --- customer questions ----------------------------------------------------------------------------
# A customer question is a sentence ending in "?" that asks the brand, or the public, for information
# or help. Three kinds of sentence share its shape and wait for nobody's answer: headlines (article,
# blog and video titles, and the posts that share them), rhetorical questions, and polls. Every check
# below reads one question sentence (or a bounded slice after it), so the whole text is read in
# linear time. Languages: en, es, de, fr, pt, it.

#: Sources whose text is an article or an episode, not a post: nobody there waits for a reply.
EDITORIAL_SOURCES = frozenset({"news", "blog", "rss", "atom", "feed", "press", "podcast", "newsletter"})
#: Sources whose `title` is the author's own words (a thread's opening question), not a headline.
DISCUSSION_SOURCES = frozenset({"reddit", "forum"})

_QUESTION_START = re.compile(
    r"(?i)^(?:how|what|when|where|why|which|who|whom|whose|can|could|is|are|am|was|were|does|do|did|will|would|has|"
    r"have|should|may|anyone|anybody|any|(?:is|are|does|do|did|wo|ca|has|have)n't)\b|"
    r"^(?:c[oó]mo|qu[eé]|cu[aá]ndo|cu[aá]nt[oa]s?|d[oó]nde|por qu[eé]|puedo|podemos|alguien|hay|tiene|tienen|ten[eé]is|"
    r"qui[eé]n(?:es)?|a qui[eé]n|con qui[eé]n|cu[aá]l(?:es)?|se puede|pod[eé]is|sab[eé]is|a qu[eé])\b|"
    r"^(?:wie|was|wann|wo|warum|weshalb|wieso|wozu|wer|wen|wem|welche\w*|kann|können|könnt|ist|sind|gibt|habt|hat|hast|"
    r"weiß|wisst|muss|darf|soll|wird|an wen|bei wem)\b|"
    r"^(?:comment|quand|où|pourquoi|combien|quel\w*|est-ce|puis-je|peut-on|quelqu'un|y a-t-il|qui|qu'est-ce|à qui|"
    r"à quel\w*|avez-vous|pouvez-vous|savez-vous|vous (?:savez|avez|pouvez)|dois-je|faut-il)\b|"
    r"^(?:como|quando|onde|por que|quanto|qual|quais|posso|podemos|algu[eé]m|tem|o app|a granola|quem|com quem|"
    r"a quem|o que|que horas|voc[eê]s (?:sabem|t[eê]m|podem))\b|"
    r"^(?:come|quando|dove|perch[eé]|quanto|quale|posso|qualcuno|c'è|chi|a chi|a che|cosa|sapete|avete|si può)\b"
)
# Asks others for information mid-sentence ("..., where can I book a test drive?", "... - am I entitled to").
_QUESTION_INSIDE = re.compile(
    r"(?i)\b(?:anyone (?:know|tried)|does anyone know|where can i|how (?:do|can) i|is there a way|"
    r"(?:am|can|could|should|do|did|will|may|must) (?:i|we)|who do i|"
    r"alguien sabe|d[oó]nde puedo|a qui[eé]n|con qui[eé]n|weiß jemand|wo kann ich|an wen|bei wem|"
    r"(?:kann|muss|soll|darf|bekomme) ich|quelqu'un sait|où (?:réserver|acheter|puis-je)|puis-je|dois-je|à qui|"
    r"algu[eé]m sabe|onde (?:agendo|compro|posso)|como faço|com quem|a quem|qualcuno sa|dove posso|come faccio|a chi|"
    r"(?:chez vous|bei euch|anche a voi|for anyone else)(?: aussi| auch)?)\b|\b(?:\w+ or \w+)\?$"
)
# "Quick one for X users: how do you ...?", "Frage an @X: Wie lange ...?": a question after a lead-in.
_ASK_LEAD_IN = re.compile(
    r"(?i)[^:?\n]{0,40}?(?:@\w+|\b(?:quick (?:one|q|question)|question|frage|pregunta|duda|pergunta|d[uú]vida|"
    r"domanda|help|hilfe|aide|ayuda|ajuda|aiuto)\b)[^:?\n]{0,40}:\s*"
)
# Asking a brand's handle for help without a question mark ("@X need help, my line is dead").
_HELP_REQUEST = re.compile(
    r"(?i)\b(?:need (?:some |urgent )?help|help me|can (?:someone|somebody|anyone|you) (?:call|contact|dm|help|ring)|"
    r"please (?:call|contact|dm|help|ring)|necesito (?:\w+ )?ayuda|brauche (?:\w+ )?hilfe|besoin d'aide|"
    r"preciso de (?:\w+ )?ajuda|(?:ho bisogno di|serve|chiedo) (?:\w+ )?aiuto|(?<![\w'’]\s)(?<![\w'’])aiuto(?=\s*[@!,:]))(?!\w)"
)
# Opinion polls and rhetorical questions are not questions waiting for an answer.
_NOT_A_QUESTION = re.compile(
    r"(?i)\b(?:anyone else (?:think|thinks|find)|is it just me|who else|how do you even|asking for a friend|"
    r"what a|what is going on|datenschutz\?|am i the only one|is there anything better|anything better than|"
    r"what'?s the point|how is (?:it|this) (?:already|possible|even|a|an|ok|okay|acceptable|allowed|legal)|"
    r"remember when|ever notice|would you (?:rather|pay)|who'?s (?:watching|excited|ready|going|coming)|"
    r"best answer|do you even|who has time|are you (?:kidding|serious|joking)|why is it that|"
    r"what kind of \w+ (?:does|would|is)|do they (?:really )?think (?:we|i)|"
    r"(?:quick )?poll|vote (?:below|now|in the replies)|"
    r"alguien m[aá]s (?:piensa|cree|opina)|qui[eé]n m[aá]s|soy (?:el|la) [uú]nic[oa]|hay algo mejor|algo mejor que|"
    r"de verdad creen|c[oó]mo puede ser|qu[eé] sentido tiene|de qu[eé] sirve|encuesta|"
    r"findet noch jemand|wer (?:ist|hat|war) noch|bin ich (?:der|die) einzige|(?:etwas|was) besseres als|"
    r"für wie (?:blöd|dumm)|wie kann es sein|umfrage|"
    r"quelqu'un d'autre (?:trouve|pense)|qui d'autre|je suis (?:le|la) seule?|y a-t-il mieux|rien de mieux que|"
    r"ils nous prennent pour|"
    r"comment est-ce possible|à quoi bon|sondage|"
    r"algu[eé]m mais acha|mais algu[eé]m (?:acha|achou|pensa)|quem mais|s[oó] eu (?:acho|que)|algo melhor (?:que|do que)|"
    r"acham que somos|como pode (?:a|o|ser|isso)|qual o sentido|de que adianta|enquete|"
    r"qualcun altro (?:trova|pensa)|chi altro|sono (?:l'unic[oa]|il solo|la sola)|qualcosa di meglio|ci prendono per|"
    r"com'è possibile|a che serve|che senso ha|sondaggio)(?!\w)"
)
# The author answers their own question ("Is there anything better? Didn't think so"), or asks for votes.
_ANSWERED_OR_POLL = re.compile(
    r"(?i)^[\s\W]{0,3}(?:didn'?t think so|i doubt it|doubt it|thought not|of course not|good times|reply with|best answer|"
    r"vote (?:below|now)|lo dudo|creo que no|glaube (?:ich )?nicht|wohl kaum|je ne crois pas|j'en doute|"
    r"acho que não|duvido|non credo|ne dubito)(?!\w)"
)

# Headline style. Format cues hold whoever writes: a label before a colon, "X vs Y:", a listicle, a
# question in an unclosed parenthesis ("10 Things ... (Is #7 True?)"), Title Case, a teaser after it.
_HEADLINE_LABEL = re.compile(
    r"(?i)^(?:review|opinion|op-ed|analysis|explained|explainer|watch|new video|video|new post|new blog post|blogged|"
    r"podcast|episode \d+|breaking|exclusive|guide|comparison|deep dive|fact check|"
    r"rese[nñ]a|an[aá]lisis|opini[oó]n|nuevo art[ií]culo|nuevo v[ií]deo|v[ií]deo|comparativa|"
    r"kommentar|analyse|test|vergleich|neuer blogpost|neues video|"
    r"tribune|avis|critique|nouvel article|nouvelle vidéo|comparatif|"
    r"an[aá]lise|opini[aã]o|novo post|novo v[ií]deo|comparativo|"
    r"recensione|analisi|nuovo articolo|nuovo video|confronto)\s*[:|–—]"
)
# "... Acme Air (Is #7 True?": the question is an aside in a parenthesis the title opened (not ":(").
_OPEN_ASIDE = re.compile(r"(?<![:;=])\((?=[¿¡#\w])[^()]*$")
_VERSUS = re.compile(r"(?i)\bvs\.?\s[^?:|–—\n]{1,60}(?:[:|–—]|\s-\s)")
_LISTICLE = re.compile(
    r"(?i)^(?:the |los |las |die |les |os |as |i |gli |le )?(?:top )?\d{1,3}\s+(?:\S+\s+){0,2}?(?:things|reasons|ways|"
    r"tips|tricks|facts|mistakes|signs|best|worst|secrets|hacks|cosas|razones|motivos|trucos|consejos|mejores|peores|"
    r"dinge|gründe|tipps|fakten|fehler|besten|choses|raisons|astuces|conseils|erreurs|meilleur\w*|coisas|dicas|erros|"
    r"melhores|piores|cose|motivi|consigli|trucchi|errori|migliori|peggiori)\b"
)
_TEASER_AFTER = re.compile(
    r"(?i)^[^\n]{0,80}?(?:👉|👇|⬇|🧵|\b(?:here'?s|here is|we (?:tested|tried|compared)|"
    r"our (?:take|review|analysis|verdict|comparison|guide|test)|full (?:breakdown|review|story|guide|comparison)|"
    r"read (?:more|our|the|it|on)|everything you need|a (?:thread|deep dive|guide)|te lo contamos|"
    r"nuestr[oa] (?:comparativa|an[aá]lisis|opini[oó]n|prueba)|unser (?:vergleich|test|fazit)|"
    r"wir haben (?:nachgerechnet|getestet|verglichen)|notre (?:comparatif|test|avis|analyse)|on a (?:fait|testé|comparé)|"
    r"fizemos|nosso (?:comparativo|teste)|nossa (?:an[aá]lise|opini[aã]o)|il nostro (?:confronto|test)|"
    r"la nostra (?:analisi|recensione)|abbiamo (?:fatto|provato|confrontato))\b)"
)
# Title Case: most words capitalised, including words ordinary prose writes in lower case.
_WORD = re.compile(r"(?:https?://|[@#])\S*|[^\W\d_][\w'-]*")
_SMALL_WORDS = frozenset(
    "a an the and or but of in on at to for by with from as vs via de del la el los las y o en al der die das den dem "
    "des und oder im am zu von vom zum zur le les du et ou à au aux d l os as e do da dos em no na il lo gli di della "
    "nel per con".split())
_TITLE_CASE_TELLS = frozenset(
    "is are was were be been do does did has have had can could will would should it its it's this that these those "
    "you your you're they them their we our really still actually worth need know why what how when which who not "
    "more much most better best right ever everyone everything nobody "
    "ist sind war hat haben wird werden kann können alle alles man es sich noch wirklich wer wie was warum nicht mehr "
    "es son está están qué que por todo todos nadie cuál cómo vale merece pena más muy se su sus lo mejor peor "
    "est sont tout tous pourquoi qui quoi comment vaut il elle ils on pas plus très mieux "
    "é são todo todos quem porque mais não seu sua "
    "è sono tutti tutto che chi perché più non si".split())
# Meaning cues, for questions that involve nobody in particular (no I, my, we, no @handle): "is X
# worth it", "is X the best ...", a year at the end, "should you", and "why" asked of no one.
_PERSONAL = re.compile(
    r"(?i)(?<![\w'])(?:i|i'm|i've|i'd|i'll|me|my|mine|we|we're|we've|our|ours|yo|mi|mis|nos|nuestr[oa]s?|"
    r"ich|mir|mich|mein\w*|wir|uns|unser\w*|je|j'|moi|mon|ma|nous|notre|m'|eu|meu|minha|meus|minhas|nós|nosso|nossa|"
    r"io|mio|mia|miei|mie|noi|nostr[oa])(?![\w'])"
)
_EVALUATIVE = re.compile(
    r"(?i)\b(?:worth (?:it|the (?:money|price|hype|cost|wait|upgrade))|worth [$€£]|live up to the hype|"
    r"too good to be true|is this the end of|vale la pena|merece la pena|lohnt (?:sich|es sich)|lohnen sie sich|"
    r"(?:vaut|valent)(?:-(?:il|elle|ils|elles))?(?: (?:vraiment|encore|toujours))? le coup|valem? a pena|"
    r"(?:ne )?vale la pena|vale il prezzo|conviene)\b"
)
_WH_START = re.compile(r"(?i)^(?:which|what|cu[aá]l|qu[eé]|welche\w*|was|quel\w*|qual|quale|quais)\b")
_SUPERLATIVE = re.compile(
    r"(?i)\b(?:is|are|es|ist|sind|est(?:-(?:il|elle))?|é|è|sono|são)\s+(?:\S+\s+){0,6}?(?:the (?:best|worst|cheapest|"
    r"fastest|safest|most|least)|(?:el|la) (?:mejor|peor)|(?:el|la|los|las) (?:\w+ )?m[aá]s|"
    r"(?:der|die|das) (?:beste|bessere|schlechteste|günstigste|billigste)|(?:le|la|les) (?:meilleure?s?|pire)|"
    r"(?:le|la) (?:moins|plus)|(?:o|a) (?:melhor|pior)|(?:o|a) (?:\w+ )?(?:mais|menos)|(?:il|la|lo) (?:migliore|peggiore)|"
    r"(?:più|meno) \w+)\b"
)
_YEAR_AT_END = re.compile(r"\b(?:19|20)\d\d\s*\)?\s*\?*$|\((?:[^()]{0,20}\s)?(?:19|20)\d\d\b[^()]{0,20}\)")
_GENERIC_YOU = re.compile(
    r"(?i)\b(?:should you|do you (?:really )?need|what you need to know|everything you need|is your \w+ (?:affected|safe)|"
    r"how much (?:more )?will (?:your|you)|will your|you won't believe|lo que (?:debes|necesitas) saber|"
    r"was (?:du|sie) wissen (?:musst|müssen)|ce qu'il faut savoir|o que você precisa saber|cosa c'è da sapere)\b"
)
_WHY_START = re.compile(r"(?i)^(?:why|por qu[eé]|warum|wieso|weshalb|pourquoi|por que|perch[eé])\b")
# "Why is the app not loading?" reports a fault: a customer's question even when it names no one.
_NEGATION = re.compile(r"(?i)(?:\b(?:not|no longer|never|still|nicht|kein\w*|no|pas|plus|não|non|più)\b|n't\b)")
_LEAD = re.compile(r"(?:@\w+[\s,:]+)*[¿¡]?\s*")
_LETTER = re.compile(r"[^\W\d_]")
# A handle the text speaks to; "via @site" and "by @author" credit a source instead.
_HANDLE_INSIDE = re.compile(r"(?<![\w@])(?<!via )(?<!by )@\w")


def _check_vocabulary() -> None:
    """The rules produce exactly the vocabulary's tags and syntax entity types (earful.core.vocabulary),
    so a tag added to one and not the other stops the service at start-up, not a consumer later."""
    tags = set(RISK_PATTERNS) | {QUESTION_TAG}
    if tags != set(TAGS):
        raise ConfigError(f"risk rules and vocabulary disagree on tags: {sorted(tags ^ set(TAGS))}")
    types = {etype for etype, _ in SOCIAL_PATTERNS}
    if types != set(SYNTAX_ENTITY_TYPES):
        raise ConfigError(f"social patterns and vocabulary disagree on entity types: {sorted(types ^ set(SYNTAX_ENTITY_TYPES))}")


_check_vocabulary()
_RISK_REGEX: dict[str, re.Pattern[str]] = {
    tag: re.compile(r"(?<![\w#@$])(?:" + "|".join(sorted(set(patterns), key=len, reverse=True)) + r")(?![\w])",
                    re.IGNORECASE)
    for tag, patterns in RISK_PATTERNS.items()
}


def social_entities(text: str) -> list[dict[str, Any]]:
    """Hashtags, @handles, $cashtags and URLs with code-point offsets (URLs win overlaps)."""
    spans: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []
    for etype, pattern in SOCIAL_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            if m.end() - m.start() > MAX_ENTITY_CHARS:  # no tag or link anyone filters on; see the vocabulary
                continue
            spans.append({"text": m.group(0), "type": etype, "start": m.start(), "end": m.end(), "origin": "rules"})
    return sorted(spans, key=lambda s: s["start"])


def risk_tags(text: str, *, title: str | None = None, source: str | None = None) -> list[dict[str, Any]]:
    """Risk and intent tags with their evidence; one tag per category (its first evidence).

    `title` and `source` are the mention's, when known: a question in an article's or a video's
    title, or anywhere in an article, is not a customer's (see `_question_span`)."""
    tags = []
    for tag, regex in _RISK_REGEX.items():
        m = regex.search(text)
        if m:
            tags.append({"tag": tag, "evidence": m.group(0), "start": m.start(), "end": m.end()})
    question = _question_span(text, title=title, source=source)
    if question:
        tags.append({"tag": QUESTION_TAG, **question})
    return tags


# Sentence ends: a run of question marks closes a question, any other end closes a sentence.
_SENTENCE_END = re.compile(r"\?+|[.!\n]")


def _questions(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every sentence that ends in question marks, in one left-to-right pass.

    The pattern `[^.!?\n]*\\?+` said the same but was retried from every position of a text with
    no sentence end: quadratic, 1.8 s of CPU for 20,000 characters.
    """
    start = 0
    for end in _SENTENCE_END.finditer(text):
        if end.group(0)[0] == "?":
            yield start, end.end()
        start = end.end()


def _title_end(text: str, title: str | None, source: str) -> int:
    """How many leading characters of `text` are the item's headline (0: none). A feed item's text
    starts with its title (the feed connector writes "title\\n\\nbody"); a Reddit or forum title is
    the author's own question, so it is read like the rest of the text."""
    if not title or source in DISCUSSION_SOURCES:
        return 0
    head = title.strip()
    skipped = len(text) - len(text.lstrip())
    return skipped + len(head) if head and text.startswith(head, skipped) else 0


def _title_case(body: str) -> bool:
    """Title Case ("Which Phone Should You Buy?"): after the first word, at least four words that are
    not function words, 80 % of them capitalised (not shouted), one being a word prose keeps in lower
    case (a verb, a pronoun). German capitalises its nouns, hence that last condition."""
    words = capitalised = tells = 0
    first = True
    for m in _WORD.finditer(body):
        word = m.group(0)
        if word.startswith(("@", "#", "http://", "https://")):
            continue
        if first or word.lower() in _SMALL_WORDS:
            first = False
            continue
        words += 1
        if word[0].isupper() and not (len(word) > 1 and word.isupper()):
            capitalised += 1
            tells += word.lower() in _TITLE_CASE_TELLS
    return words >= 4 and capitalised >= 0.8 * words and tells > 0


def _headline(body: str, after: str, personal: bool) -> bool:
    """Whether the question sentence `body` (handles and ¿ removed) reads as a headline, given the
    text `after` it on its line and whether it involves someone (I, we, an @handle). A listicle, a
    question in an open parenthesis and Title Case are headlines whoever writes them; the other cues
    ("Review:", "X vs Y:", "worth it", a year, a teaser after it) only when it involves nobody, as a
    customer may write "@ZephyrMobile Essentials vs Plus: which one includes roaming?"."""
    if _LISTICLE.match(body) or _OPEN_ASIDE.search(body) or _title_case(body):
        return True
    if personal:
        return False
    return bool(_HEADLINE_LABEL.match(body) or _VERSUS.search(body) or _TEASER_AFTER.match(after)
                or _EVALUATIVE.search(body) or _YEAR_AT_END.search(body) or _GENERIC_YOU.search(body)
                or (_WHY_START.match(body) and not _NEGATION.search(body))
                or (_SUPERLATIVE.search(body) and not _WH_START.match(body)))


# After a question, as much of the text as the checks on what follows it read.
_AFTER_CHARS = 120
# A "sentence" longer than this is unpunctuated text, not a question (and would be all evidence).
MAX_QUESTION_CHARS = 1000


def _question_span(text: str, title: str | None = None, source: str | None = None) -> dict[str, Any] | None:
    """The first sentence that asks for an answer, with its span; None when there is none.

    Not a customer question: anything from an editorial source (news, blogs, feeds), a question in
    the item's `title` (unless a Reddit or forum thread), a headline-style question, a rhetorical
    question or a poll."""
    kind = (source or "").strip().lower()
    if kind in EDITORIAL_SOURCES:
        return None
    headline_end = _title_end(text, title, kind)
    for begin, finish in _questions(text):
        if finish <= headline_end or finish - begin > MAX_QUESTION_CHARS:
            continue
        chunk = text[begin:finish]
        stripped = chunk.lstrip()
        offset = begin + len(chunk) - len(stripped)
        # Skip leading @handles ("@AcmeAir how do I ...?") and an opening ¿ before the question word.
        lead = _LEAD.match(stripped)  # always matches (possibly nothing)
        body = stripped[lead.end() if lead else 0:].replace("’", "'")
        if not _LETTER.search(body) or _NOT_A_QUESTION.search(body):
            continue
        line_end = text.find("\n", finish, finish + _AFTER_CHARS)
        after = text[finish:line_end if line_end >= 0 else finish + _AFTER_CHARS].replace("’", "'")
        if _ANSWERED_OR_POLL.match(after):
            continue
        # Addressed to someone: a handle before, inside or right after the question ("...? @OrbitTelecom").
        handled = stripped.startswith("@") or bool(_HANDLE_INSIDE.search(body) or _HANDLE_INSIDE.search(after))
        lead_in = _ASK_LEAD_IN.match(body)
        asked = (_QUESTION_START.match(body) or _QUESTION_INSIDE.search(body)
                 or ((handled or "¿" in stripped) and len(body.split()) >= 3)
                 or (lead_in and _QUESTION_START.match(body[lead_in.end():])))
        if asked and not _headline(body, after, handled or bool(_PERSONAL.search(body))):
            return {"evidence": stripped, "start": offset, "end": finish}
    return _help_request(text, headline_end)


def _help_request(text: str, skip: int) -> dict[str, Any] | None:
    """A plea for help to a brand's handle with no question mark, as its sentence; only when the
    text names a handle (without one it is a plea to nobody in particular)."""
    m = _HELP_REQUEST.search(text, skip)
    if m is None or _HANDLE_INSIDE.search(text, skip) is None:
        return None
    start = max(text.rfind(end, skip, m.start()) for end in ".!?\n") + 1
    start = max(start, skip)
    stop = min((i for i in (text.find(end, m.end()) for end in ".!?\n") if i >= 0), default=len(text))
    if text.startswith("?", stop) or stop - start > MAX_QUESTION_CHARS:  # a question: judged (and refused) above
        return None
    sentence = text[start:stop]
    stripped = sentence.strip()
    first = start + len(sentence) - len(sentence.lstrip())
    return {"evidence": stripped, "start": first, "end": first + len(stripped)} if stripped else None


_COMPLAINT_CUE_REGEX = re.compile(
    r"(?<![\w#@$])(?:" + "|".join(sorted(set(SERVICE_FAILURE_CUES + RISK_PATTERNS["complaint"]
                                              + RISK_PATTERNS["operational"]), key=len, reverse=True)) + r")(?![\w])",
    re.IGNORECASE)


def complaint_cue(text: str) -> dict[str, Any] | None:
    """The first sign that the text reports the service failing its customer (a complaint, a
    disruption, a failed payment, a wait, a threat to leave), with its span; None when there is none.
    The sentiment model reads such a text as negative unless it is clearly positive."""
    m = _COMPLAINT_CUE_REGEX.search(text)
    return None if m is None else {"evidence": m.group(0), "start": m.start(), "end": m.end()}
