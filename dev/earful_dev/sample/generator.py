"""Seeded generator of a realistic sample mention stream, and readers for the bundled sample.

Why: demos, load tests and end-to-end tests need a stream that looks like real social listening
traffic (daily rhythm, several languages, replies, reposts, a crisis spike) yet is reproducible
byte for byte, so it can be committed and compared. Nothing here touches the network or the
wall clock; every random choice comes from ``random.Random`` instances derived from the seed.

The model
---------
* **Arrivals.** Each watchlist brand has audiences in up to three regions (Americas UTC-5,
  Europe UTC+1, Asia-Pacific UTC+8). Each (brand, region) pair is an independent
  non-homogeneous Poisson process, simulated by thinning: its rate is the brand's daily peak
  rate times the region's weight times a 24-hour activity curve evaluated at the region's local
  time (low around 03:00-05:00, rising from 06:00, flat through the working day). Summed over
  regions this gives a quiet night and a morning ramp; with the default 00:00-08:00 UTC window,
  acme-air reaches ~2/min, globex ~1.5/min, initech ~0.6/min and skyjet ~0.8/min. General chatter
  that names no watchlist follows the same rhythm: 12% of the baseline, ~10% of the whole stream.
* **Content.** The region picks the language (Europe: en/de/fr/es/pt, Americas: en/es/pt,
  Asia-Pacific: en), the language picks the source (e.g. more Mastodon in German and French),
  and the sector of the brand (airline, telecom, software) picks a kind: praise, complaint,
  question, neutral remark, competitor comparison or a $cashtag post. News items are a headline
  plus lede; blog posts a title plus a paragraph; Reddit posts a title plus body. Texts come
  from hand-written templates per language, filled with cities, flight numbers, amounts,
  hashtags, emoji and links. Every brand mention matches its watchlist's query, and the exact
  set of watchlists each text matches is checked with the services' own matcher (chatter
  matches none).
* **Conversation.** Some posts reply to earlier posts of the same source (``in_reply_to``),
  brand help accounts answer a share of customer questions and complaints on Twitter a few
  minutes later, and a few posts quote or repost others (``reposted_from``). Engagement counts
  grow with the author's followers (log-normal, heavy tailed) and are never below the replies
  and reposts visible in the stream.
* **Crisis.** At ``crisis_at_hours`` (default 7.5 h) a security researcher reports that Acme Air
  leaked passenger data; an outage, refund demands, GDPR/regulator and class-action talk and news
  coverage follow in five languages. The crisis is a Poisson process of its own: the rate ramps
  to ~70/min within a minute, holds for a fifth of ``crisis_minutes`` and then decays
  exponentially, giving ~500 mentions over 15 minutes, with many reposts and several times the
  usual engagement. The airline posts a statement and an update, and its help account answers
  some people. Baseline traffic, including acme-air's own, continues meanwhile.

Output lines are ``{"mention": {...}, "scenario": "baseline" | "crisis"}`` where the mention is
exactly the body item ``POST /v1/mentions`` accepts, sorted by ``created_at``.
Run ``python -m earful.sample.generator --help`` (or ``earful sample generate``) to regenerate.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import random
import re
import sys
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from earful.core.errors import ValidationError as EarfulValidationError
from earful.watchlists import Watchlist, WatchlistSet

UTC = timezone.utc
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_WATCHLISTS = PACKAGE_DIR / "watchlists"
STREAM_FILE = "stream.jsonl.gz"
META_FILE = "stream.meta.json"
GENERATOR = "earful.sample.generator"
VERSION = 1

DEFAULT_SEED = 7
DEFAULT_START = datetime(2026, 11, 2, tzinfo=UTC)
DEFAULT_HOURS = 8.0
DEFAULT_CRISIS_AT_HOURS = 7.5
DEFAULT_CRISIS_MINUTES = 15.0
CRISIS_WATCHLIST = "acme-air"

SOURCES = ("twitter", "mastodon", "bluesky", "reddit", "news", "blog")
LANGS = ("en", "es", "de", "fr", "pt")
SOCIAL = ("twitter", "bluesky", "mastodon")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_TWITTER_EPOCH_MS = 1_288_834_974_657

# ---------------------------------------------------------------------------------------------
# Arrival model
# ---------------------------------------------------------------------------------------------

# Relative activity by local hour of day (1.0 = busiest hour): quiet night, morning ramp.
_DIURNAL = (0.35, 0.22, 0.14, 0.10, 0.08, 0.10, 0.20, 0.42, 0.68, 0.85, 0.93, 0.97,
            1.00, 0.98, 0.95, 0.93, 0.92, 0.93, 0.95, 0.92, 0.85, 0.75, 0.62, 0.48)

_REGIONS: dict[str, dict[str, Any]] = {
    "americas": {"utc_offset": -5, "langs": {"en": 0.76, "es": 0.16, "pt": 0.08}},
    "europe": {"utc_offset": 1, "langs": {"en": 0.46, "de": 0.18, "fr": 0.14, "es": 0.13, "pt": 0.09}},
    "apac": {"utc_offset": 8, "langs": {"en": 1.0}},
}

# Per-brand behaviour; the watchlist (names, handles, query) comes from the watchlists/ folder.
_PROFILES: dict[str, dict[str, Any]] = {
    "acme-air": {
        "sector": "airline", "peak_per_min": 3.9, "competitor": "skyjet", "cashtag": "$ACME",
        "domain": "acmeair.example", "regions": {"europe": 0.62, "americas": 0.33, "apac": 0.05},
        "followers": {"AcmeAir": 482_310, "AcmeAirHelp": 96_415}, "answer": {"question": 0.45, "complaint": 0.22},
    },
    "globex": {
        "sector": "telecom", "peak_per_min": 2.3, "competitor": None, "cashtag": "$GLBX",
        "domain": "globex.example", "regions": {"europe": 0.80, "americas": 0.20},
        "followers": {"Globex": 1_204_877, "GlobexCares": 151_090}, "answer": {"question": 0.35, "complaint": 0.20},
    },
    "initech": {
        "sector": "software", "peak_per_min": 0.95, "competitor": None, "cashtag": None,
        "domain": "initech.example", "regions": {"americas": 0.60, "europe": 0.35, "apac": 0.05},
        "followers": {"Initech": 58_302, "InitechSupport": 9_877}, "answer": {"question": 0.30, "complaint": 0.15},
    },
    "skyjet": {
        "sector": "airline", "peak_per_min": 1.3, "competitor": "acme-air", "cashtag": None,
        "domain": "skyjet.example", "regions": {"europe": 0.75, "americas": 0.25},
        "followers": {"SkyJet": 233_514, "SkyJetHelp": 41_026}, "answer": {"question": 0.25, "complaint": 0.12},
    },
}

_KEEP_REPEAT = 0.15  # chance an exact repeat of an earlier text is kept rather than re-drawn
CHATTER_SHARE = 0.12  # of the baseline (non-crisis) mentions; ~10% of the whole stream with the crisis

_CRISIS_PEAK_PER_MIN = 70.0
_CRISIS_RAMP_MIN = 1.0

_KIND_WEIGHTS = {
    "airline": {"praise": 0.20, "complaint": 0.30, "question": 0.20, "neutral": 0.20, "compare": 0.06, "finance": 0.04},
    "telecom": {"praise": 0.15, "complaint": 0.38, "question": 0.22, "neutral": 0.19, "finance": 0.06},
    "software": {"praise": 0.22, "complaint": 0.27, "question": 0.25, "neutral": 0.26},
}
_KIND_TONE = {"praise": "positive", "complaint": "negative", "question": "neutral", "neutral": "neutral",
              "compare": "neutral", "finance": "neutral", "news": "neutral", "chatter": "neutral"}

_SOURCE_WEIGHTS = {
    "en": {"twitter": 0.44, "bluesky": 0.17, "mastodon": 0.08, "reddit": 0.23, "news": 0.04, "blog": 0.04},
    "es": {"twitter": 0.62, "bluesky": 0.12, "mastodon": 0.06, "reddit": 0.09, "news": 0.06, "blog": 0.05},
    "de": {"twitter": 0.42, "bluesky": 0.14, "mastodon": 0.25, "reddit": 0.08, "news": 0.06, "blog": 0.05},
    "fr": {"twitter": 0.49, "bluesky": 0.14, "mastodon": 0.19, "reddit": 0.07, "news": 0.06, "blog": 0.05},
    "pt": {"twitter": 0.58, "bluesky": 0.20, "mastodon": 0.05, "reddit": 0.07, "news": 0.06, "blog": 0.04},
}
_CRISIS_LANGS = {"en": 0.60, "de": 0.12, "es": 0.11, "fr": 0.10, "pt": 0.07}
_CRISIS_SOURCES = {"twitter": 0.47, "bluesky": 0.15, "mastodon": 0.08, "reddit": 0.13, "news": 0.12, "blog": 0.05}

# ---------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------

_CITIES = {
    "en": ["London", "Dublin", "Manchester", "New York", "Boston", "Chicago", "Toronto", "Edinburgh",
           "Amsterdam", "Lisbon", "Madrid", "Berlin", "Paris", "Rome", "Singapore", "Sydney", "Denver"],
    "es": ["Madrid", "Barcelona", "Sevilla", "Valencia", "Bilbao", "Málaga", "Ciudad de México", "Bogotá",
           "Buenos Aires", "Lima", "Lisboa", "París", "Londres"],
    "de": ["Berlin", "München", "Hamburg", "Frankfurt", "Köln", "Düsseldorf", "Stuttgart", "Wien", "Zürich",
           "Palma", "London", "Paris"],
    "fr": ["Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Bordeaux", "Nantes", "Lille", "Bruxelles",
           "Genève", "Montréal", "Lisbonne"],
    "pt": ["Lisboa", "Porto", "Faro", "São Paulo", "Rio de Janeiro", "Belo Horizonte", "Recife", "Brasília",
           "Madri", "Paris", "Londres"],
}
_WEEKDAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes"],
    "de": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag"],
    "fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi"],
    "pt": ["segunda", "terça", "quarta", "quinta", "sexta"],
}
_FIRST = {
    "en": ["James", "Olivia", "Liam", "Emma", "Noah", "Ava", "Ethan", "Mia", "Lucas", "Chloe", "Mason", "Grace",
           "Priya", "Arjun", "Aisha", "Omar", "Hannah", "Jack", "Sophie", "Daniel", "Zoe", "Ryan", "Megan",
           "Kevin", "Laura", "Marcus", "Tasha", "Ben", "Rachel", "Tom", "Nina", "Sam", "Wei", "Kenji"],
    "es": ["Lucía", "Mateo", "Sofía", "Martín", "Valentina", "Diego", "Camila", "Javier", "Paula", "Carlos",
           "Elena", "Andrés", "Marta", "Pablo", "Isabel", "Alejandro", "Carmen", "Sergio", "Ximena", "Raúl"],
    "de": ["Lukas", "Anna", "Felix", "Lea", "Jonas", "Marie", "Leon", "Sophie", "Paul", "Laura", "Tobias",
           "Katharina", "Jan", "Julia", "Stefan", "Sabine", "Max", "Hannah", "Jürgen", "Mia"],
    "fr": ["Camille", "Louis", "Léa", "Hugo", "Chloé", "Lucas", "Manon", "Thomas", "Inès", "Julien", "Sarah",
           "Antoine", "Claire", "Mathieu", "Élodie", "Nicolas", "Juliette", "Théo", "Margaux"],
    "pt": ["João", "Ana", "Pedro", "Beatriz", "Lucas", "Mariana", "Gabriel", "Juliana", "Rafael", "Larissa",
           "Tiago", "Carolina", "Bruno", "Fernanda", "Miguel", "Inês", "Rodrigo", "Letícia"],
}
_LAST = {
    "en": ["Smith", "Johnson", "Patel", "Nguyen", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Taylor",
           "Clarke", "Walker", "Hughes", "Khan", "Murphy", "Lee", "Evans", "Roberts", "Bennett", "Cole",
           "Foster", "Hayes", "Price", "Reid", "Ward", "Okafor", "Chen"],
    "es": ["García", "Rodríguez", "Martínez", "López", "Sánchez", "Pérez", "Gómez", "Fernández", "Ruiz",
           "Díaz", "Moreno", "Álvarez", "Romero", "Navarro", "Torres", "Castillo"],
    "de": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Hoffmann",
           "Schulz", "Koch", "Richter", "Wolf", "Neumann", "Braun", "Krüger"],
    "fr": ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
           "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Fontaine", "Girard"],
    "pt": ["Silva", "Santos", "Oliveira", "Souza", "Pereira", "Costa", "Rodrigues", "Almeida", "Nascimento",
           "Lima", "Araújo", "Ferreira", "Carvalho", "Gomes", "Ribeiro"],
}
_HANDLE_SUFFIX = ["", "", "", "_", "x", "88", "92", "07", "_uk", "_travels", "_writes", "_dev", "99", "_ok", "2"]
_REDDIT_WORDS = (["Curious", "Sleepy", "Grumpy", "Salty", "Quiet", "Lucky", "Random", "Tired", "Happy", "Brave",
                  "Little", "Spicy", "Fuzzy", "Odd", "Cosmic"],
                 ["Otter", "Pangolin", "Walrus", "Falcon", "Badger", "Lemur", "Heron", "Moose", "Toucan", "Gecko",
                  "Penguin", "Ferret", "Bison", "Koala", "Puffin"])
_MASTODON_INSTANCES = ["mastodon.example", "mstdn.example", "social.example", "fedi.example", "toot.example"]
_MASTODON_BY_LANG = {"de": ["troet.example", "chaos.example"], "fr": ["piaille.example", "framapiaf.example"],
                     "es": ["mastodon-es.example"], "pt": ["masto-pt.example"], "en": ["hachyderm.example"]}
_OUTLETS = {
    "en": [("dailyledger", "The Daily Ledger", 1_250_000), ("metrowire", "Metro Wire", 640_000),
           ("bizposttoday", "Business Post Today", 410_000), ("aviationweekly", "Aviation Weekly Review", 95_000),
           ("techdispatch", "Tech Dispatch", 380_000), ("capitalherald", "The Capital Herald", 2_100_000)],
    "es": [("diariomercantil", "Diario Mercantil", 520_000), ("elcorreodigital", "El Correo Digital", 880_000),
           ("noticiasaereas", "Noticias Aéreas", 45_000)],
    "de": [("tagesblick", "Tagesblick", 1_400_000), ("wirtschaftskurier", "Wirtschaftskurier", 310_000),
           ("luftfahrtaktuell", "Luftfahrt Aktuell", 38_000)],
    "fr": [("lequotidieneco", "Le Quotidien Éco", 450_000), ("journalduciel", "Journal du Ciel", 52_000),
           ("infocontinent", "Info Continent", 1_050_000)],
    "pt": [("folhaeconomica", "Folha Econômica", 690_000), ("jornaldoviajante", "Jornal do Viajante", 61_000),
           ("portalnoticias", "Portal Notícias", 1_300_000)],
}
_BLOG_SUFFIX = {"airline": ["travels", "flies", "onthego", "miles"], "telecom": ["tech", "gadgets", "digital"],
                "software": ["dev", "ops", "notes", "builds"], None: ["writes", "journal", "life"]}
_SUBREDDITS = {
    "airline": ["travel", "flying", "awardtravel", "TravelHacks", "europe", "solotravel"],
    "telecom": ["mobile", "HomeNetworking", "techsupport", "europe", "cordcutters"],
    "software": ["sysadmin", "devops", "SaaS", "ITManagers", "msp"],
    None: ["AskReddit", "CasualConversation", "travel", "coffee", "mildlyinfuriating"],
    "crisis": ["travel", "privacy", "cybersecurity", "news", "europe", "flying"],
}
_SUBREDDITS_BY_LANG = {"es": ["spain", "mexico", "argentina"], "de": ["de", "germany", "Austria"],
                       "fr": ["france", "Quebec", "belgium"], "pt": ["brasil", "portugal"]}
_AGENTS = {"en": ["Mia", "Tom", "Priya", "Jordan", "Sam", "Alex"], "es": ["Lucía", "Dani", "Marta"],
           "de": ["Jana", "Tim", "Nils"], "fr": ["Chloé", "Hugo", "Inès"], "pt": ["Bia", "Caio", "Rita"]}
_REF = {
    "en": {"airline": "booking reference", "telecom": "account number", "software": "workspace ID"},
    "es": {"airline": "localizador", "telecom": "número de cliente", "software": "ID del espacio de trabajo"},
    "de": {"airline": "Buchungsnummer", "telecom": "Kundennummer", "software": "Workspace-ID"},
    "fr": {"airline": "référence de réservation", "telecom": "numéro client", "software": "identifiant d'espace"},
    "pt": {"airline": "código de reserva", "telecom": "número de cliente", "software": "ID do workspace"},
}
_HASHTAGS = {
    "airline": {"en": ["#travel", "#avgeek", "#delayed", "#flying", "#customerservice", "#frequentflyer", "#airport"],
                "es": ["#viajes", "#aeropuerto", "#vuelos", "#retraso"], "de": ["#Reisen", "#Flughafen", "#Fliegen", "#Verspätung"],
                "fr": ["#voyage", "#aéroport", "#avion", "#retard"], "pt": ["#viagem", "#aeroporto", "#voo", "#atraso"]},
    "telecom": {"en": ["#5G", "#broadband", "#fibre", "#customerservice", "#wfh"], "es": ["#fibra", "#5G", "#internet"],
                "de": ["#Glasfaser", "#5G", "#Internet", "#Störung"], "fr": ["#fibre", "#5G", "#internet", "#panne"],
                "pt": ["#internet", "#5G", "#fibra"]},
    "software": {"en": ["#SaaS", "#devops", "#sysadmin", "#productivity", "#API"], "es": ["#SaaS", "#productividad"],
                 "de": ["#SaaS", "#DevOps", "#Produktivität"], "fr": ["#SaaS", "#devops", "#productivité"],
                 "pt": ["#SaaS", "#produtividade"]},
    None: {"en": ["#MondayMood", "#travel", "#wfh", "#coffee", "#life"], "es": ["#lunes", "#viajes", "#café"],
           "de": ["#Montag", "#Reisen", "#Kaffee"], "fr": ["#lundi", "#voyage", "#café"], "pt": ["#segunda", "#viagem", "#café"]},
    "crisis": {"en": ["#databreach", "#outage", "#GDPR", "#privacy", "#infosec", "#cybersecurity"],
               "es": ["#filtración", "#RGPD", "#privacidad"], "de": ["#Datenleck", "#DSGVO", "#Datenschutz"],
               "fr": ["#fuitededonnées", "#RGPD", "#cybersécurité"], "pt": ["#vazamento", "#LGPD", "#privacidade"]},
}
_EMOJI = {"positive": ["😊", "🙌", "✈️", "👏", "❤️", "🎉", "👍"], "negative": ["😡", "🤬", "🙄", "😤", "💀", "😩", "🤦"],
          "neutral": ["🤔", "👀", "📱", "☕"]}
_TAILS = {
    "en": {"positive": ["Made my day.", "More of this please.", "10/10.", "Nice one."],
           "negative": ["Unbelievable.", "Never again.", "Do better.", "Sigh.", "So tired of this.", "Every. Single. Time."],
           "neutral": ["FYI.", "Just saying.", "Anyway."]},
    "es": {"positive": ["¡Gracias!", "Un 10.", "Así sí."], "negative": ["Increíble.", "Nunca más.", "Qué vergüenza.", "Vaya tela."],
           "neutral": ["Para que lo sepáis.", "En fin."]},
    "de": {"positive": ["Danke!", "Top.", "Gerne wieder."], "negative": ["Unfassbar.", "Nie wieder.", "Echt jetzt?", "Peinlich."],
           "neutral": ["Nur zur Info.", "Naja."]},
    "fr": {"positive": ["Merci !", "Au top.", "Bravo."], "negative": ["Incroyable.", "Plus jamais.", "Sérieusement ?", "La honte."],
           "neutral": ["Pour info.", "Bref."]},
    "pt": {"positive": ["Valeu!", "Nota 10.", "Assim sim."], "negative": ["Inacreditável.", "Nunca mais.", "Que vergonha.", "Sério?"],
           "neutral": ["Fica a dica.", "Enfim."]},
}
_OPENERS = {
    "en": {"positive": ["Wow.", "Small win:", "Good news:", "Love this.", "Credit where it's due:"],
           "negative": ["Ugh.", "Unreal.", "Wow.", "Rant:", "Seriously.", "Here we go again.", "Of course."],
           "neutral": ["PSA:", "Hmm.", "FYI:", "Random thought:", "Noticed this:"],
           "question": ["Quick one:", "Question:", "Help?", "Hmm.", "Genuine question:"]},
    "es": {"positive": ["¡Qué bien!", "Buenas noticias:", "Ole."], "negative": ["Vaya.", "Otra vez.", "Lo de siempre.", "En serio."],
           "neutral": ["Ojo:", "Aviso:", "Por cierto:"], "question": ["Pregunta:", "Duda rápida:", "¿Ayuda?"]},
    "de": {"positive": ["Wow.", "Gute Nachricht:", "Sehr schön."], "negative": ["Ernsthaft.", "Na toll.", "Mal wieder.", "Unglaublich."],
           "neutral": ["Info:", "Hm.", "Übrigens:"], "question": ["Kurze Frage:", "Frage:", "Hilfe?"]},
    "fr": {"positive": ["Bonne nouvelle :", "Franchement, top.", "Waouh."], "negative": ["Sérieux.", "Encore.", "Génial…", "Pfff."],
           "neutral": ["Info :", "Hmm.", "Au fait :"], "question": ["Petite question :", "Question :", "Besoin d'aide :"]},
    "pt": {"positive": ["Boa notícia:", "Olha só.", "Uau."], "negative": ["Sério.", "De novo.", "Que beleza…", "Affe."],
           "neutral": ["Aviso:", "Hmm.", "Aliás:"], "question": ["Pergunta rápida:", "Dúvida:", "Ajuda?"]},
}
_REDDIT_CLOSERS = {  # by mood: question / negative / other
    "en": {"question": ["Any advice?", "Thanks in advance.", "What would you do?"],
           "negative": ["Rant over.", "Is this normal?", "Anyone else?"], "other": ["Edit: typo", "Just thought I'd share.", "Thoughts?"]},
    "es": {"question": ["¿Algún consejo?", "Gracias de antemano."], "negative": ["Fin del desahogo.", "¿Es normal?"],
           "other": ["Lo dejo por aquí.", "¿Qué opináis?"]},
    "de": {"question": ["Irgendwelche Tipps?", "Danke im Voraus."], "negative": ["Ist das normal?", "Musste raus."],
           "other": ["Nur so als Info.", "Meinungen?"]},
    "fr": {"question": ["Des conseils ?", "Merci d'avance."], "negative": ["C'est normal ?", "Fin du coup de gueule."],
           "other": ["Je partage.", "Vous en pensez quoi ?"]},
    "pt": {"question": ["Alguma dica?", "Valeu desde já."], "negative": ["Isso é normal?", "Desabafo feito."],
           "other": ["Só compartilhando.", "O que vocês acham?"]},
}

# ---------------------------------------------------------------------------------------------
# Templates. Slots: {b} any brand form, {bn} brand name, {bat} @handle, {o}/{on} competitor,
# {cash} $cashtag, {city}/{city2}, {n} flight no., {gate}, {mins}, {hrs}, {days}, {weeks}, {amt},
# {pct}, {pct2}, {k2}, {speed}, {ver}, {day}, {dom} brand domain, {ref}, {agent}, {first}.
# ---------------------------------------------------------------------------------------------

_SOCIAL: dict[str, dict[str, dict[str, list[str]]]] = {
    "en": {
        "airline": {
            "praise": [
                "Shoutout to {b} for rebooking me in under 5 minutes at {city}. That's how it's done",
                "Smooth flight {city} → {city2} with {b} today, crew were lovely",
                "{b} upgraded me to the front for no reason and I will now defend them forever",
                "Honestly impressed with {b}: landed {mins} minutes early and bags were already on the belt",
                "The new {b} app is actually good? Boarding pass loaded offline, no drama",
                "Kudos to the {b} gate team at {city}, they kept everyone calm during a messy delay",
                "Flew {b} for the first time. Legroom ok, coffee decent, on time. Would do it again",
                "{b} crew on flight {n} found my kid's stuffed rabbit and brought it to the gate. Heroes.",
                "Not often I say this about an airline but {b} customer service was great today",
                "Got my refund from {b} in {days} days, no chasing needed. Pleasantly surprised",
            ],
            "complaint": [
                "{b} cancelled my {city} flight with 2 hours notice and the app just says 'contact us'. Great.",
                "Stuck at {city} for {hrs} hours, no updates from {b}, no vouchers, nothing",
                "{b} lost my bag AGAIN. Third time this year. {city} baggage desk has a queue out the door",
                "Been on hold with {b} for {mins} minutes. The hold music is now part of my personality",
                "Paid {amt} for seat selection on {b} and got moved to a middle seat anyway",
                "Why does {b} charge {amt} to fix a one-letter typo in a name? Absolute robbery",
                "{b} flight {n} delayed again. Every single week on this route",
                "The {b} app logged me out mid check-in and now it won't take my booking ref",
                "Refund from {b} still not here after {weeks} weeks. Starting to think it doesn't exist",
                "Dear {b}, a sandwich voucher is not compensation for a {hrs} hour delay",
                "{b} overbooked flight {n} to {city} and now nobody at the desk knows anything",
            ],
            "question": [
                "how do I change my booking {bat}?",
                "{bat} is there a way to add a checked bag after booking? the website keeps erroring",
                "Does anyone know if {b} lets you bring a guitar as cabin baggage?",
                "{bat} my flight {n} to {city} shows 'schedule change', do I need to do anything?",
                "Hey {bat}, how long do refunds usually take? Requested one {days} days ago",
                "Is {b} wifi free on short haul now or is that only for members?",
                "{bat} can I book a seat for my infant's car seat online or only at the airport?",
                "Anyone flown {b} {city} to {city2} recently? Worth paying for priority boarding?",
                "{bat} how do I add my frequent flyer number to an existing booking?",
            ],
            "neutral": [
                "Boarding {b} to {city}. See you on the other side",
                "{b} is adding a daily {city}–{city2} route from March according to the schedule update",
                "Interesting that {b} now shows CO2 estimates per flight in the booking flow",
                "At {city} waiting for {b} {n}, gate just changed to {gate}",
                "{b} moving to a new terminal at {city} next month, heads up if you fly them",
                "Tray table notes: {b} flight {n}, {city} to {city2}, {mins} minutes in",
            ],
            "compare": [
                "Flew {b} out and {o} back. {b} wins on legroom, {o} wins on price",
                "Switching from {o} to {b} for the {city} route, their schedule just fits better",
                "{b} or {o} for {city} → {city2}? Asking for a nervous flyer",
                "{o} charged me {amt} for a carry-on, {b} didn't. Easy choice next time",
                "Hot take: {o} has better snacks than {b} but {b} actually leaves on time",
            ],
            "finance": [
                "{cash} up {pct}% premarket after {bn} raised its winter guidance",
                "{cash} down {pct}% this week on fuel costs. {bn} load factors still look solid to me",
                "Adding to my {cash} position, {bn} is the best run airline in Europe right now",
            ],
        },
        "telecom": {
            "praise": [
                "Fair play to {b}, fibre engineer turned up on time and was done in 40 minutes",
                "{b} 5G in {city} is genuinely fast now, {speed} Mbps on the train",
                "Switched to {b} last month and my bill is {amt} lower for the same plan. No complaints",
                "Had a billing issue, {b} chat sorted it in 10 minutes. Didn't expect that",
                "Roaming with {b} in {city2} worked out of the box, no surprise charges",
                "{b} upgraded my line to {speed} Mbps for free. Not complaining",
            ],
            "complaint": [
                "{b} internet down AGAIN in {city}. Third time this week. Working from home is impossible",
                "{b} charged me {amt} for roaming I never used. On hold for {mins} minutes now",
                "No signal on {b} anywhere near {city} station. What am I paying for?",
                "{b} raised my price by {pct}% mid-contract and calls it an 'inflation adjustment'. Cool cool",
                "My {b} router reboots every hour. Support told me to turn it off and on again. Thanks.",
                "Been waiting {days} days for a {b} engineer. Still no broadband",
                "Paying {b} for {speed} Mbps and getting a tenth of that every evening",
            ],
            "question": [
                "{bat} is there an outage in {city}? Fibre light is red since this morning",
                "How do I cancel {b} without calling? The website sends me in circles",
                "{bat} does my plan include EU roaming or do I need an add-on?",
                "Anyone on {b} getting slow speeds tonight? Speedtest says {speed} Mbps on a 1 Gbps plan",
                "{bat} how do I get a PAC code to switch my number?",
                "{bat} can I move my broadband to a new address or is that a new contract?",
            ],
            "neutral": [
                "{b} rolling out 5G standalone to {city} next month per their network page",
                "Got the new {b} router today, setting it up now",
                "{b} store at {city} is getting a refit, temporarily closed",
                "Reading the {b} terms for the new family plan. Long document.",
                "Speedtest on {b} fibre this morning: {speed} Mbps down",
            ],
            "finance": [
                "{cash} down {pct}% after {bn} warned on subscriber growth",
                "{cash} holding up well today, {bn} fibre rollout numbers looked strong",
            ],
        },
        "software": {
            "praise": [
                "{b} finally shipped dark mode and I'm not crying, you're crying",
                "Migrated our team to {b} last quarter, reporting takes half the time now",
                "Props to {b} support, answered my ticket on a Sunday with an actual fix",
                "The new {b} API docs are so much better. Built the integration in an afternoon",
                "{b} {ver} is fast. Like, noticeably fast. Dashboards load instantly",
                "Our {b} admin saved the quarter-end close with one saved filter. Legend",
            ],
            "complaint": [
                "{b} SSO broke again this morning, whole team locked out",
                "{b} just moved SSO to the enterprise tier. Paying {amt}/seat for basic security is wild",
                "Why does {b} log me out every 20 minutes? Lost a whole report again",
                "{b} export to CSV has been 'processing' for {mins} minutes",
                "Upgraded to {b} {ver} and half our automations stopped working. Great start to the week",
                "{b} support ticket open for {days} days, still 'investigating'",
                "Another {b} TPS report template change nobody asked for",
            ],
            "question": [
                "{bat} is the API rate limit per user or per workspace?",
                "Does anyone know how to bulk-edit permissions in {b}? Clicking through 200 users manually",
                "{bat} when does {ver} roll out to EU tenants?",
                "Anyone using {b} with SAML SSO? Worth the hassle?",
                "{bat} how do I recover a deleted workspace? Asking for a very nervous colleague",
                "{bat} is there a way to schedule exports to S3-compatible storage?",
            ],
            "neutral": [
                "Sitting through the {b} {ver} release webinar",
                "{b} status page shows degraded performance in the EU region",
                "Our procurement team is evaluating {b} against two other tools this quarter",
                "TIL {b} has a command palette. Ctrl+K. Mind blown",
                "Day {days} of migrating our old reports into {b}",
            ],
        },
    },
    "es": {
        "airline": {
            "praise": [
                "Gracias {b} por reubicarme tan rápido en {city}. Así da gusto volar",
                "Vuelo {city}–{city2} con {b} puntualísimo y la tripulación encantadora",
                "Primera vez que vuelo con {b} y la verdad, muy bien: puntuales y sin sorpresas",
                "La nueva app de {b} funciona de maravilla, tarjeta de embarque en dos clics",
                "La tripulación del vuelo {n} de {b} fue un encanto con mi abuela. Gracias",
            ],
            "complaint": [
                "{b} me canceló el vuelo a {city} con dos horas de aviso. Ni un correo, nada",
                "Llevo {mins} minutos esperando al teléfono con {b}. Increíble",
                "{b} ha perdido mi maleta otra vez. En {city} la cola del mostrador de equipajes da la vuelta",
                "Pagué {amt} por elegir asiento en {b} y me han puesto en el del medio igualmente",
                "Retraso de {hrs} horas con {b} en {city} y ni un vale para comer",
                "El reembolso de {b} sigue sin llegar después de {weeks} semanas",
            ],
            "question": [
                "{bat} ¿cómo cambio la fecha de mi reserva? La web da error",
                "¿Alguien sabe si {b} deja llevar la guitarra en cabina?",
                "{bat} ¿cuánto tarda normalmente un reembolso? Lo pedí hace {days} días",
                "{bat} mi vuelo {n} a {city} aparece como 'cambio de horario', ¿tengo que hacer algo?",
            ],
            "neutral": [
                "Embarcando con {b} rumbo a {city}",
                "{b} abrirá una ruta diaria {city}–{city2} a partir de marzo",
                "En {city} esperando el vuelo {n} de {b}, han cambiado la puerta a la {gate}",
            ],
            "compare": [
                "Ida con {b} y vuelta con {o}: {b} gana en espacio, {o} en precio",
                "¿{b} o {o} para ir a {city}? Acepto consejos",
            ],
        },
        "telecom": {
            "praise": [
                "Cambié a {b} el mes pasado y pago {amt} menos por lo mismo. Encantado",
                "El 5G de {b} en {city} vuela, {speed} Mbps en el metro",
                "El técnico de {b} llegó puntual y en media hora tenía la fibra funcionando",
            ],
            "complaint": [
                "Otra vez sin internet con {b} en {city}. Tercera vez esta semana",
                "{b} me ha cobrado {amt} de roaming que no usé. Llevo {mins} minutos al teléfono",
                "{b} me sube la tarifa un {pct}% a mitad de contrato. Genial",
                "Sin cobertura de {b} en todo {city}. ¿Para qué pago?",
                "{days} días esperando al técnico de {b}. Sigo sin fibra",
            ],
            "question": [
                "{bat} ¿hay una avería en {city}? El router tiene la luz roja desde esta mañana",
                "¿Cómo se da de baja uno de {b} sin llamar?",
                "{bat} ¿mi tarifa incluye roaming en la UE?",
            ],
            "neutral": [
                "{b} lleva el 5G a {city} el mes que viene",
                "Hoy me ha llegado el router nuevo de {b}, a ver qué tal",
            ],
        },
        "software": {
            "praise": [
                "Migramos el equipo a {b} y los informes ahora tardan la mitad",
                "El soporte de {b} me respondió en domingo con la solución. Chapó",
            ],
            "complaint": [
                "El SSO de {b} se ha vuelto a caer, todo el equipo bloqueado",
                "Actualizamos a {b} {ver} y la mitad de las automatizaciones dejaron de funcionar",
                "{b} me cierra la sesión cada 20 minutos. He perdido el informe otra vez",
            ],
            "question": [
                "{bat} ¿el límite de la API es por usuario o por espacio de trabajo?",
                "¿Alguien sabe cómo editar permisos en bloque en {b}?",
            ],
            "neutral": [
                "Viendo el webinar de lanzamiento de {b} {ver}",
                "La página de estado de {b} indica rendimiento degradado en la región UE",
            ],
        },
    },
    "de": {
        "airline": {
            "praise": [
                "Danke {b}, in {city} super schnell umgebucht. So muss das laufen",
                "Pünktlich gelandet, Koffer schon auf dem Band – {b} kann es also doch",
                "Die neue {b} App ist echt gut, Bordkarte offline und kein Stress",
                "Crew von {b} auf Flug {n} war richtig freundlich, danke!",
            ],
            "complaint": [
                "{b} hat meinen Flug nach {city} zwei Stunden vorher gestrichen. Keine Info, nichts",
                "Seit {mins} Minuten in der Warteschleife bei {b}. Ich gebe bald auf",
                "{b} hat schon wieder meinen Koffer verloren. Am Gepäckschalter in {city} ist die Schlange endlos",
                "{hrs} Stunden Verspätung mit {b} in {city} und nicht mal ein Essensgutschein",
                "{amt} für die Sitzplatzwahl bei {b} bezahlt und trotzdem in der Mitte gelandet",
                "Erstattung von {b} nach {weeks} Wochen immer noch nicht da",
            ],
            "question": [
                "{bat} wie kann ich meine Buchung umbuchen? Die Website zeigt nur Fehler",
                "Weiß jemand, ob man bei {b} einen Kinderwagen kostenlos mitnehmen darf?",
                "{bat} wie lange dauert eine Erstattung normalerweise? Antrag vor {days} Tagen gestellt",
                "{bat} mein Flug {n} nach {city} zeigt 'Flugplanänderung' – muss ich etwas tun?",
            ],
            "neutral": [
                "Boarding mit {b} nach {city}. Bis später",
                "{b} fliegt ab März täglich {city}–{city2}",
                "Am Flughafen {city}, {b} Flug {n} jetzt an Gate {gate}",
            ],
            "compare": [
                "Hin mit {b}, zurück mit {o}. Beinfreiheit: {b}. Preis: {o}",
                "{b} oder {o} nach {city}? Bin für Tipps dankbar",
            ],
        },
        "telecom": {
            "praise": [
                "Zu {b} gewechselt und zahle jetzt {amt} weniger im Monat. Läuft",
                "5G von {b} in {city} ist echt schnell, {speed} Mbit/s in der S-Bahn",
                "Der Techniker von {b} war pünktlich, Glasfaser lief nach 30 Minuten",
            ],
            "complaint": [
                "Schon wieder kein Internet bei {b} in {city}. Dritte Störung diese Woche",
                "{b} hat mir {amt} Roaming berechnet, das ich nie genutzt habe",
                "{b} erhöht mitten im Vertrag den Preis um {pct}%. Toll.",
                "Kein Netz von {b} am Bahnhof {city}. Wofür zahle ich eigentlich?",
                "Warte seit {days} Tagen auf einen Techniker von {b}. Immer noch kein DSL",
            ],
            "question": [
                "{bat} gibt es eine Störung in {city}? Router blinkt rot seit heute früh",
                "Wie kündige ich bei {b}, ohne anzurufen?",
                "{bat} ist EU-Roaming in meinem Tarif drin?",
            ],
            "neutral": [
                "{b} bringt 5G Standalone nächsten Monat nach {city}",
                "Neuer Router von {b} ist da, mal sehen",
            ],
        },
        "software": {
            "praise": [
                "Seit wir auf {b} umgestiegen sind, dauern Reports nur noch halb so lang",
                "Der Support von {b} hat am Sonntag geantwortet – mit echter Lösung",
            ],
            "complaint": [
                "{b} SSO ist schon wieder kaputt, das ganze Team ist ausgesperrt",
                "Update auf {b} {ver} und die Hälfte unserer Automatisierungen läuft nicht mehr",
                "Warum loggt mich {b} alle 20 Minuten aus? Bericht wieder weg",
            ],
            "question": [
                "{bat} gilt das API-Limit pro Nutzer oder pro Workspace?",
                "Weiß jemand, wie man in {b} Berechtigungen gesammelt ändert?",
            ],
            "neutral": [
                "Sitze im Release-Webinar zu {b} {ver}",
                "{b} Statusseite meldet eingeschränkte Leistung in der EU-Region",
            ],
        },
    },
    "fr": {
        "airline": {
            "praise": [
                "Merci {b}, on m'a replacé sur un autre vol en cinq minutes à {city}. Top",
                "Vol {city}–{city2} avec {b} pile à l'heure, équipage adorable",
                "La nouvelle appli {b} est vraiment bien, carte d'embarquement hors ligne sans souci",
                "Premier vol avec {b} et franchement rien à redire",
            ],
            "complaint": [
                "{b} a annulé mon vol pour {city} deux heures avant. Aucun mail, rien",
                "{mins} minutes d'attente au téléphone avec {b}. J'en peux plus",
                "{b} a encore perdu ma valise. À {city} la file au comptoir bagages est interminable",
                "{hrs} heures de retard avec {b} à {city} et même pas un bon repas",
                "Payé {amt} pour choisir mon siège chez {b} et je me retrouve quand même au milieu",
                "Toujours pas de remboursement de {b} après {weeks} semaines",
            ],
            "question": [
                "{bat} comment je modifie ma réservation ? Le site plante",
                "Quelqu'un sait si {b} accepte les instruments de musique en cabine ?",
                "{bat} combien de temps pour un remboursement ? Demande faite il y a {days} jours",
                "{bat} mon vol {n} pour {city} indique 'changement d'horaire', je dois faire quelque chose ?",
            ],
            "neutral": [
                "Embarquement avec {b} direction {city}",
                "{b} lancera une ligne quotidienne {city}–{city2} en mars",
                "À {city}, le vol {n} de {b} change de porte : {gate}",
            ],
            "compare": [
                "Aller avec {b}, retour avec {o}. {b} pour la place aux jambes, {o} pour le prix",
                "{b} ou {o} pour aller à {city} ? Je prends vos avis",
            ],
        },
        "telecom": {
            "praise": [
                "Passé chez {b} le mois dernier, je paie {amt} de moins pour le même forfait",
                "La 5G {b} à {city} est vraiment rapide, {speed} Mb/s dans le métro",
                "Technicien {b} à l'heure, fibre installée en 40 minutes. Chapeau",
            ],
            "complaint": [
                "Encore une panne internet chez {b} à {city}. Troisième fois cette semaine",
                "{b} m'a facturé {amt} de roaming que je n'ai jamais utilisé",
                "{b} augmente mon forfait de {pct}% en plein contrat. Sympa.",
                "Aucun réseau {b} près de la gare de {city}. Je paie pour quoi ?",
                "{days} jours que j'attends un technicien {b}. Toujours pas de fibre",
            ],
            "question": [
                "{bat} il y a une panne à {city} ? La box clignote rouge depuis ce matin",
                "Comment résilier {b} sans appeler ?",
                "{bat} le roaming UE est inclus dans mon forfait ?",
            ],
            "neutral": [
                "{b} déploie la 5G SA à {city} le mois prochain",
                "Nouvelle box {b} reçue, installation en cours",
            ],
        },
        "software": {
            "praise": [
                "Depuis qu'on est passés sur {b}, les rapports prennent deux fois moins de temps",
                "Le support {b} m'a répondu un dimanche avec une vraie solution",
            ],
            "complaint": [
                "Le SSO de {b} est encore en panne, toute l'équipe bloquée",
                "Mise à jour vers {b} {ver} et la moitié de nos automatisations ne marchent plus",
            ],
            "question": [
                "{bat} la limite de l'API, c'est par utilisateur ou par espace de travail ?",
                "Quelqu'un sait comment modifier les droits en masse dans {b} ?",
            ],
            "neutral": [
                "En plein webinaire de lancement de {b} {ver}",
                "La page de statut de {b} signale des lenteurs en Europe",
            ],
        },
    },
    "pt": {
        "airline": {
            "praise": [
                "Valeu {b}, me remarcaram em cinco minutos em {city}. Assim dá gosto",
                "Voo {city}–{city2} com a {b} no horário e tripulação super simpática",
                "O novo app da {b} é ótimo, cartão de embarque offline sem drama",
            ],
            "complaint": [
                "A {b} cancelou meu voo para {city} com duas horas de antecedência. Nenhum aviso",
                "{mins} minutos esperando no telefone com a {b}. Inacreditável",
                "A {b} perdeu minha mala de novo. Em {city} a fila da bagagem não anda",
                "{hrs} horas de atraso com a {b} em {city} e nem um voucher de comida",
                "Reembolso da {b} ainda não caiu depois de {weeks} semanas",
            ],
            "question": [
                "{bat} como faço para alterar minha reserva? O site só dá erro",
                "Alguém sabe se a {b} deixa levar violão na cabine?",
                "{bat} quanto tempo demora o reembolso? Pedi há {days} dias",
            ],
            "neutral": [
                "Embarcando com a {b} rumo a {city}",
                "A {b} vai abrir uma rota diária {city}–{city2} a partir de março",
            ],
            "compare": [
                "Fui de {b} e voltei de {o}: {b} ganha no espaço, {o} no preço",
            ],
        },
        "telecom": {
            "praise": [
                "Mudei para a {b} no mês passado e pago {amt} a menos. Recomendo",
                "O 5G da {b} em {city} está voando, {speed} Mbps no metrô",
            ],
            "complaint": [
                "Sem internet da {b} em {city} de novo. Terceira vez na semana",
                "A {b} me cobrou {amt} de roaming que eu nunca usei",
                "A {b} aumentou meu plano em {pct}% no meio do contrato. Ótimo.",
                "Zero sinal da {b} perto da estação de {city}",
            ],
            "question": [
                "{bat} tem alguma falha em {city}? O modem está com luz vermelha desde cedo",
                "Como cancelo a {b} sem ligar?",
            ],
            "neutral": [
                "A {b} leva o 5G para {city} no mês que vem",
                "Chegou o modem novo da {b}, vamos ver",
            ],
        },
        "software": {
            "praise": [
                "Migramos o time para o {b} e os relatórios agora levam metade do tempo",
                "O suporte do {b} respondeu num domingo com a solução. Top",
            ],
            "complaint": [
                "O SSO do {b} caiu de novo, time inteiro bloqueado",
                "Atualizamos para o {b} {ver} e metade das automações parou",
            ],
            "question": [
                "{bat} o limite da API é por usuário ou por workspace?",
            ],
            "neutral": [
                "Assistindo o webinar de lançamento do {b} {ver}",
            ],
        },
    },
}

_HEADLINES: dict[str, dict[str, list[str]]] = {
    "en": {
        "airline": [
            "{bn} adds daily {city}–{city2} service for summer 2027",
            "{bn} posts {pct2}% on-time rate in October",
            "{bn} to trial biometric boarding at {city}",
            "{bn} and cabin crew union agree pay deal",
            "{bn} orders {k2} new narrowbody jets",
            "{bn} expands lounge at {city} hub",
            "{bn} trims winter capacity on transatlantic routes",
            "{bn} passengers face queues at {city} as check-in moves to new terminal",
        ],
        "telecom": [
            "{bn} to raise mobile prices by {pct}% from January",
            "{bn} extends fibre to {k2},000 more homes around {city}",
            "{bn} restores service after regional outage near {city}",
            "{bn} launches 5G standalone network in {city}",
            "{bn} reports subscriber growth ahead of forecasts",
        ],
        "software": [
            "{bn} releases version {ver} of its workflow suite",
            "{bn} acquires analytics start-up for undisclosed sum",
            "{bn} patches critical flaw in reporting module",
            "{bn} opens new engineering hub in {city}",
            "{bn} cuts {k2} jobs in restructuring",
        ],
    },
    "es": {
        "airline": ["{bn} abrirá una ruta diaria {city}–{city2} en verano", "{bn} alcanza un {pct2}% de puntualidad en octubre",
                    "{bn} y los tripulantes de cabina cierran un acuerdo salarial"],
        "telecom": ["{bn} subirá sus tarifas móviles un {pct}% en enero", "{bn} lleva la fibra a {k2}.000 hogares más en {city}",
                    "{bn} restablece el servicio tras una avería en {city}"],
        "software": ["{bn} lanza la versión {ver} de su suite", "{bn} abre un centro de ingeniería en {city}"],
    },
    "de": {
        "airline": ["{bn} fliegt ab Sommer täglich {city}–{city2}", "{bn} meldet {pct2} Prozent Pünktlichkeit im Oktober",
                    "{bn} einigt sich mit Flugbegleitern auf Tarifvertrag"],
        "telecom": ["{bn} erhöht Mobilfunkpreise ab Januar um {pct} Prozent", "{bn} baut Glasfaser für {k2}.000 weitere Haushalte in {city} aus",
                    "{bn}: Störung in {city} behoben"],
        "software": ["{bn} veröffentlicht Version {ver} seiner Workflow-Suite", "{bn} eröffnet Entwicklungszentrum in {city}"],
    },
    "fr": {
        "airline": ["{bn} ouvre une ligne quotidienne {city}–{city2} cet été", "{bn} affiche {pct2} % de ponctualité en octobre",
                    "{bn} et les syndicats de PNC signent un accord salarial"],
        "telecom": ["{bn} va augmenter ses forfaits mobiles de {pct} % en janvier", "{bn} raccorde {k2} 000 foyers de plus à la fibre à {city}",
                    "{bn} rétablit le service après une panne à {city}"],
        "software": ["{bn} publie la version {ver} de sa suite", "{bn} ouvre un centre d'ingénierie à {city}"],
    },
    "pt": {
        "airline": ["{bn} terá rota diária {city}–{city2} no verão", "{bn} registra {pct2}% de pontualidade em outubro",
                    "{bn} fecha acordo salarial com comissários"],
        "telecom": ["{bn} vai reajustar planos móveis em {pct}% em janeiro", "{bn} leva fibra a mais {k2} mil casas em {city}",
                    "{bn} restabelece serviço após falha em {city}"],
        "software": ["{bn} lança a versão {ver} da sua plataforma", "{bn} abre centro de engenharia em {city}"],
    },
}
_LEDES: dict[str, dict[str | None, list[str]]] = {
    "en": {
        "airline": ["The carrier said demand on European routes remained strong heading into the winter season.",
                    "Analysts said the move would put pressure on low-cost rivals.",
                    "The airline said the change would take effect from the next schedule period."],
        "telecom": ["The operator said the investment was part of a five-year network plan.",
                    "Consumer groups criticised the timing as households face higher bills."],
        "software": ["The company said customers would be upgraded automatically over the coming weeks.",
                     "Analysts said enterprise demand for workflow tools remained resilient."],
        None: ["{bn} did not immediately respond to a request for comment.", "Shares were little changed in early trading.",
               "The announcement was made on {day}.", "Officials said more details would follow later this week.",
               "The news was first reported on {day} in {city}.", "Industry sources expect further announcements before the end of the year."],
    },
    "es": {None: ["La compañía no respondió de inmediato a una solicitud de comentarios.", "El anuncio se hizo el {day}.",
                  "Los analistas consideran que la medida presionará a sus competidores.",
                  "Fuentes del sector esperan más detalles en los próximos días.", "La noticia se conoció el {day} en {city}."]},
    "de": {None: ["Das Unternehmen äußerte sich auf Anfrage zunächst nicht.", "Die Ankündigung erfolgte am {day}.",
                  "Analysten sehen darin Druck auf die Konkurrenz.", "Weitere Details sollen in den kommenden Tagen folgen.",
                  "Bekannt wurde die Nachricht am {day} in {city}."]},
    "fr": {None: ["L'entreprise n'a pas répondu dans l'immédiat à nos questions.", "L'annonce a été faite {day}.",
                  "Selon les analystes, la mesure devrait mettre la concurrence sous pression.",
                  "Plus de détails sont attendus dans les prochains jours.", "L'information a été confirmée {day} à {city}."]},
    "pt": {None: ["A empresa não respondeu de imediato ao pedido de comentário.", "O anúncio foi feito na {day}.",
                  "Analistas avaliam que a medida pressiona a concorrência.", "Mais detalhes devem ser divulgados nos próximos dias.",
                  "A notícia foi confirmada na {day} em {city}."]},
}
_BLOG_TITLES: dict[str, dict[str, list[str]]] = {
    "en": {
        "airline": ["Review: {bn} economy from {city} to {city2}", "Is {bn} worth it in 2026? An honest review",
                    "How I got my {bn} refund (and how long it took)", "{bn} vs {o}: which is better for families?",
                    "Five things I learned flying {bn} every week"],
        "telecom": ["{bn} fibre review after six months", "How to cancel {bn} without the hassle",
                    "Is {bn} 5G actually faster? I tested it in {city}"],
        "software": ["{bn} {ver}: what's new and what broke", "Migrating 300 users to {bn}: lessons learned",
                     "Why we left {bn} (and why we came back)"],
    },
    "es": {"airline": ["Reseña: volando con {bn} de {city} a {city2}", "¿Merece la pena {bn}? Mi experiencia"],
           "telecom": ["Seis meses con la fibra de {bn}: mi opinión"], "software": ["{bn} {ver}: novedades y problemas"]},
    "de": {"airline": ["Erfahrungsbericht: mit {bn} von {city} nach {city2}", "Lohnt sich {bn}? Ein ehrlicher Test"],
           "telecom": ["Sechs Monate Glasfaser bei {bn}: mein Fazit"], "software": ["{bn} {ver}: was neu ist und was hakt"]},
    "fr": {"airline": ["Test : {bn} en éco de {city} à {city2}", "{bn}, ça vaut le coup ? Mon avis honnête"],
           "telecom": ["Six mois avec la fibre {bn} : mon bilan"], "software": ["{bn} {ver} : nouveautés et régressions"]},
    "pt": {"airline": ["Review: voando de {bn} de {city} para {city2}", "Vale a pena voar de {bn}? Minha opinião"],
           "telecom": ["Seis meses com a fibra da {bn}: vale a pena?"], "software": ["{bn} {ver}: o que mudou"]},
}
_USER_REPLIES: dict[str, dict[str, list[str]]] = {
    "en": {"negative": ["same thing happened to me with {b} last month", "{b} did this to me too, took {weeks} weeks to sort out",
                        "this is exactly why I stopped using {b}", "ugh, {b} really needs to fix this", "sending solidarity. {b} support is a maze"],
           "positive": ["agreed, {b} has been solid lately", "had the same great experience with {b}!", "nice, good to hear {b} is getting better"],
           "neutral": ["try the {b} chat, it's faster than calling", "I think {b} updated that policy last week",
                       "you can do it in the {b} app under settings I think", "DM {bat}, they answered me within an hour"]},
    "es": {"negative": ["a mí me pasó lo mismo con {b} el mes pasado", "por esto dejé {b}"],
           "positive": ["totalmente de acuerdo, {b} ha mejorado mucho"],
           "neutral": ["prueba el chat de {b}, es más rápido que llamar", "escribe a {bat} por DM, a mí me contestaron rápido"]},
    "de": {"negative": ["genau das Gleiche ist mir mit {b} letzten Monat passiert", "deshalb bin ich weg von {b}"],
           "positive": ["stimmt, {b} ist in letzter Zeit echt besser geworden"],
           "neutral": ["probier den Chat von {b}, geht schneller als anrufen", "schreib {bat} per DM, ging bei mir fix"]},
    "fr": {"negative": ["pareil pour moi avec {b} le mois dernier", "c'est pour ça que j'ai quitté {b}"],
           "positive": ["d'accord, {b} s'est vraiment amélioré"],
           "neutral": ["essaie le chat {b}, c'est plus rapide que le téléphone", "écris à {bat} en DM, ils m'ont répondu vite"]},
    "pt": {"negative": ["aconteceu o mesmo comigo com a {b} mês passado", "por isso larguei a {b}"],
           "positive": ["concordo, a {b} melhorou muito"],
           "neutral": ["tenta o chat da {b}, é mais rápido que ligar", "chama {bat} na DM, me responderam rápido"]},
}
_BRAND_REPLIES: dict[str, dict[str, list[str]]] = {
    "en": {"question": ["Hi {first}, you can sort this yourself at https://{dom}/help. If anything's unclear, DM us and we'll help. ^{agent}, {bn}",
                        "Hey {first}! Happy to help. Send us a DM with your {ref} and we'll sort it. {bn} team",
                        "Hi {first}, thanks for reaching out. Our help page covers this: https://{dom}/help. Still stuck? DM us. – {bn}"],
           "complaint": ["Hi {first}, we're really sorry about this. Please DM us your {ref} so we can look into it. ^{agent}, {bn}",
                         "That's not the experience we want for you, {first}. Please DM us and we'll make it right. – {bn} team",
                         "Sorry for the trouble, {first}. We've flagged this with our team; DM us the details and we'll follow up. ^{agent} from {bn}"],
           "crisis": ["Hi {first}, we're very sorry. Our latest update is at https://{dom}/statement and refunds for disrupted flights can be requested at https://{dom}/refund. ^{agent}, {bn}",
                      "We understand your concern, {first}. Please see https://{dom}/statement for what we know so far; we'll contact affected customers directly. – {bn}",
                      "Hi {first}, check-in is being restored airport by airport. If your flight was cancelled you can request a full refund at https://{dom}/refund. ^{agent}, {bn}"]},
    "es": {"question": ["Hola {first}, puedes gestionarlo en https://{dom}/help. Si necesitas ayuda, escríbenos por DM. – Equipo {bn}"],
           "complaint": ["Hola {first}, sentimos mucho lo ocurrido. Envíanos un DM con tu {ref} y lo revisamos. ^{agent}, {bn}"],
           "crisis": ["Hola {first}, lo sentimos de verdad. Toda la información en https://{dom}/statement y los reembolsos en https://{dom}/refund. – {bn}"]},
    "de": {"question": ["Hallo {first}, das geht unter https://{dom}/help. Falls es hakt, schreib uns per DM. – Dein {bn} Team"],
           "complaint": ["Hallo {first}, das tut uns leid. Schick uns bitte eine DM mit deiner {ref}, wir kümmern uns. ^{agent}, {bn}"],
           "crisis": ["Hallo {first}, es tut uns sehr leid. Aktuelle Infos: https://{dom}/statement, Erstattungen: https://{dom}/refund. – {bn}"]},
    "fr": {"question": ["Bonjour {first}, tout est expliqué ici : https://{dom}/help. Besoin d'aide ? Écrivez-nous en DM. – L'équipe {bn}"],
           "complaint": ["Bonjour {first}, nous sommes désolés. Envoyez-nous un DM avec votre {ref}, on regarde ça. ^{agent}, {bn}"],
           "crisis": ["Bonjour {first}, toutes nos excuses. Informations : https://{dom}/statement ; remboursements : https://{dom}/refund. – {bn}"]},
    "pt": {"question": ["Oi {first}, dá para resolver em https://{dom}/help. Qualquer coisa, chama na DM. – Equipe {bn}"],
           "complaint": ["Olá {first}, sentimos muito. Manda uma DM com seu {ref} que a gente verifica. ^{agent}, {bn}"],
           "crisis": ["Olá {first}, pedimos desculpas. Informações em https://{dom}/statement e reembolsos em https://{dom}/refund. – {bn}"]},
}

_CHATTER: dict[str, list[str]] = {
    "en": [
        "Airport security line at {city} is wild this morning",
        "Why is every flight in November either full or delayed",
        "Packing for {city2}, how many sweaters is too many",
        "Train to {city} delayed {mins} minutes, love that for me",
        "My wifi dies the exact moment I join a video call. Every time.",
        "Anyone else's phone battery draining like crazy after the update?",
        "Hot take: window seat > aisle seat, fight me",
        "Coffee number three and it's not even 9am",
        "New laptop day! Setting everything up from scratch",
        "The spreadsheet has 40 tabs and none of them are named",
        "Jet lag is fake until it isn't",
        "Just watched a plane land in the fog at {city}, pilots are wizards",
        "Does anyone actually read terms and conditions",
        "Monday standup could have been an email",
        "Roaming charges should be illegal, change my mind",
        "Best airport food you've ever had? Go",
        "Finally booked the holiday. {city2} in March!",
        "Reached the acme of my procrastination today: reorganised the sock drawer",
        "Sky's clear over {city} tonight, perfect for plane spotting",
        "Our office printer has achieved sentience and chosen violence",
        "{mins} minutes on hold with my bank. The music is a single 8 second loop",
        "Kids asleep, laptop open, tea ready. Let's go",
        "Can someone explain why hotel wifi still costs money in 2026",
        "Reminder to back up your phone. That's it, that's the post",
        "Who schedules a 7am meeting on a {day}",
        "Password rules that need a symbol, a number and a haiku are out of control",
        "Lost my boarding pass between security and the gate. In my own pocket. Found it",
    ],
    "es": [
        "La cola del control de seguridad en {city} esta mañana es de risa",
        "¿Por qué todos los vuelos de noviembre van llenos o con retraso?",
        "Tercer café y aún no son las 9",
        "El wifi se cae justo cuando empiezo una videollamada. Siempre.",
        "Por fin reservadas las vacaciones: {city2} en marzo",
        "¿Alguien lee de verdad los términos y condiciones?",
        "El tren a {city} lleva {mins} minutos de retraso, qué bien",
        "¿Ventanilla o pasillo? Yo ventanilla siempre",
        "Reunión a las 8 un {day}. Quien la convocó no tiene corazón",
    ],
    "de": [
        "Die Schlange bei der Sicherheitskontrolle in {city} ist heute früh der Wahnsinn",
        "Warum ist jeder Flug im November voll oder verspätet?",
        "Dritter Kaffee und es ist noch nicht mal 9",
        "Das WLAN bricht genau dann ab, wenn das Meeting startet. Jedes Mal.",
        "Endlich Urlaub gebucht: {city2} im März",
        "Zug nach {city} hat {mins} Minuten Verspätung. Wie immer.",
        "Liest eigentlich irgendwer die AGB?",
        "Fensterplatz oder Gang? Fenster, immer.",
        "Meeting um 8 Uhr am {day}. Wer macht so was",
    ],
    "fr": [
        "La file à la sécurité à {city} ce matin, c'est n'importe quoi",
        "Pourquoi tous les vols de novembre sont pleins ou en retard ?",
        "Troisième café et il n'est même pas 9h",
        "Le wifi lâche pile au début de la visio. À chaque fois.",
        "Vacances enfin réservées : {city2} en mars",
        "Train pour {city} en retard de {mins} minutes, classique",
        "Quelqu'un lit vraiment les CGU ?",
        "Hublot ou couloir ? Hublot, toujours.",
        "Réunion à 8h un {day}. Qui fait ça",
    ],
    "pt": [
        "A fila da segurança em {city} hoje está absurda",
        "Por que todo voo em novembro está lotado ou atrasado?",
        "Terceiro café e nem deu 9h",
        "O wifi cai bem na hora da reunião. Sempre.",
        "Finalmente reservei as férias: {city2} em março",
        "Alguém lê mesmo os termos e condições?",
        "Janela ou corredor? Janela sempre.",
        "Trem para {city} com {mins} minutos de atraso, normal",
    ],
}
_CHATTER_HEADLINES = {
    "en": ["Rail strike called off after late-night talks", "Airports brace for busiest winter since 2019",
           "Fuel prices ease for third straight week", "Broadband prices set to rise across Europe in January",
           "Remote work tools see steady demand, survey finds", "Storm warning issued for coastal areas this weekend",
           "Ten tips for surviving long-haul flights with kids", "Central bank holds rates steady"],
    "es": ["Desconvocada la huelga de trenes tras una negociación nocturna",
           "Los aeropuertos se preparan para el invierno con más tráfico desde 2019", "El precio del combustible baja por tercera semana"],
    "de": ["Bahnstreik nach nächtlichen Verhandlungen abgesagt", "Flughäfen rechnen mit dem verkehrsreichsten Winter seit 2019",
           "Spritpreise sinken die dritte Woche in Folge"],
    "fr": ["La grève des trains levée après des négociations nocturnes", "Les aéroports se préparent à l'hiver le plus chargé depuis 2019",
           "Les prix du carburant baissent pour la troisième semaine"],
    "pt": ["Greve dos trens suspensa após negociação de madrugada", "Aeroportos se preparam para o inverno mais movimentado desde 2019",
           "Preço dos combustíveis cai pela terceira semana"],
}

# --- the crisis ------------------------------------------------------------------------------

_CRISIS: dict[str, dict[str, list[str]]] = {
    "en": {
        "breach": [
            "So {b} leaked passenger data?? Names, emails, passport numbers. Incredible",
            "Just got an email from {bn} saying my data 'may have been accessed'. Passport number included. Call it what it is: a data breach",
            "{b} data breach: if you flew with them in the last 3 years, assume your passport details are out there",
            "Reports say {bn} left 1.4 million passenger records on an open server. Anyone else get the email?",
            "My {b} account shows a login from a country I've never been to. Thanks for the data breach",
            "Wait, {bn} stored passport scans unencrypted? In 2026?",
            "The {b} breach email took three paragraphs to say 'we lost your data'",
            "Checked haveibeenleaked.example: my email is in the {b} dump. Passport number too",
        ],
        "outage": [
            "{b} app and website both down, can't check in, can't see my booking. Related to the breach?",
            "Check-in for {bn} at {city} is completely down, queue goes past the coffee shop",
            "{b} outage + data breach on the same morning. Whoever runs IT there needs a long holiday",
            "Gate agents at {city} writing {bn} boarding passes by hand. Systems down everywhere",
            "Tried to rebook on the {b} app: 'service unavailable'. Tried the phone line: 2 hour wait",
            "{b} flight {n} still on the ground at {city}, crew say the outage hit the departure systems",
        ],
        "anger": [
            "{b} leaking my passport details is not the customer experience I signed up for",
            "Never flying {b} again. You had one job: keep my data safe",
            "{b} in-flight entertainment now includes your own passport scan",
            "The silence from {b} right now is deafening. Say something",
            "{b} spent millions on a rebrand and apparently nothing on security",
            "Imagine paying {amt} for a seat and {bn} throws in your passport as a free gift to hackers",
            "How is {bn} still not on the news homepage? 1.4 million people's passports",
        ],
        "refund": [
            "I want a refund from {b}. Not flying with an airline that can't protect my passport number",
            "{bat} my flight is cancelled because of your outage and the refund form is down too. What now?",
            "Anyone managed to get a refund out of {bn} today? The form just spins",
            "{bat} I want a refund, not a voucher. Flight {n} cancelled, no rebooking offered",
            "Refund for flight {n} requested from {b}. Let's see if that system was hacked too",
        ],
        "legal": [
            "Class action against {bn} over the data breach incoming, lawyers are already posting about it",
            "A law firm is collecting names for a class action lawsuit against {bn} over the passenger data leak",
            "If your passport was in the {b} breach, keep every email. There will be a lawsuit",
            "Lawsuit filed against {bn} in {city} over the data breach, per court records",
        ],
        "regulator": [
            "If you're in the EU: the {b} breach is a GDPR matter. File a complaint with your data protection regulator",
            "The regulator says it is 'in contact with {bn}' about the breach. GDPR fines can reach 4% of global turnover",
            "72 hours to notify under GDPR. Did {bn} tell the regulator before telling passengers?",
            "Data protection regulator confirms it is looking into the {b} data breach",
        ],
        "compare": [
            "Done with {b}. Booked {o} for next month instead",
            "{o} must be loving this {bn} data breach",
            "Switching my {city} trip from {b} to {o}. Not risking my passport details again",
        ],
        "question": [
            "{bat} was my data part of the breach? How do I find out?",
            "{bat} should I renew my passport after this data breach? Serious question",
            "Is the {b} app safe to use right now or should we wait?",
        ],
        "quote": ["This is really bad for {b}", "Everyone who has flown {b} should read this", "{b} needs to answer this today",
                  "And {bn} still hasn't said anything?", "Oof. {b}", "Data breach AND outage. {b} having a day"],
    },
    "es": {
        "breach": ["¿{b} ha filtrado datos de pasajeros? Nombres, correos y números de pasaporte. Increíble",
                   "Me acaba de llegar un correo de {bn} diciendo que mis datos 'podrían haber sido expuestos'. Eso es una filtración de datos",
                   "Filtración de datos en {b}: si has volado con ellos en los últimos 3 años, da por hecho que tu pasaporte anda por ahí"],
        "outage": ["La app y la web de {b} caídas, no puedo hacer el check-in", "El check-in de {bn} en {city} está totalmente caído, colas enormes"],
        "anger": ["Nunca más vuelo con {b}. Solo tenían que proteger mis datos", "El silencio de {b} ahora mismo es vergonzoso"],
        "refund": ["Quiero el reembolso de {b}. No pienso volar con una aerolínea que no protege mi pasaporte",
                   "{bat} me habéis cancelado el vuelo por la caída y el formulario de reembolso tampoco funciona"],
        "legal": ["Ya se habla de una demanda colectiva contra {bn} por la filtración de datos",
                  "Un despacho de abogados prepara una demanda contra {bn} por la filtración"],
        "regulator": ["Lo de {b} es un caso de RGPD de manual. Reclamad ante la autoridad de protección de datos",
                      "El regulador de protección de datos investiga la filtración de {bn}"],
        "compare": ["Se acabó {b}. El mes que viene vuelo con {o}"],
        "question": ["{bat} ¿mis datos están en la filtración? ¿Cómo lo compruebo?"],
        "quote": ["Esto pinta muy mal para {b}", "¿Y {bn} sigue sin decir nada?"],
    },
    "de": {
        "breach": ["{b} hat Passagierdaten geleakt?? Namen, E-Mails, Passnummern. Unfassbar",
                   "Gerade Mail von {bn}: meine Daten 'könnten betroffen sein'. Nennt es doch einfach Datenleck",
                   "Datenleck bei {b}: Wer in den letzten 3 Jahren mit denen geflogen ist, sollte vom Schlimmsten ausgehen"],
        "outage": ["App und Website von {b} down, kein Check-in möglich", "Check-in bei {bn} in {city} komplett ausgefallen, riesige Schlangen"],
        "anger": ["Nie wieder {b}. Ihr hattet eine Aufgabe: meine Daten schützen", "Das Schweigen von {b} gerade ist peinlich"],
        "refund": ["Ich will mein Geld zurück von {b}, keinen Gutschein",
                   "{bat} Flug wegen eurem Ausfall gestrichen und das Erstattungsformular geht auch nicht"],
        "legal": ["Sammelklage gegen {bn} wegen des Datenlecks wird schon vorbereitet", "Eine Kanzlei sammelt Betroffene für eine Klage gegen {bn}"],
        "regulator": ["Das {b} Datenleck ist ein klarer DSGVO-Fall. Beschwerde bei der Datenschutzbehörde einreichen!",
                      "Datenschutzbehörde prüft das Datenleck bei {bn}"],
        "compare": ["Tschüss {b}. Nächsten Monat fliege ich mit {o}"],
        "question": ["{bat} sind meine Daten vom Datenleck betroffen? Wie finde ich das raus?"],
        "quote": ["Das sieht richtig übel aus für {b}", "Und {bn} schweigt immer noch?"],
    },
    "fr": {
        "breach": ["{b} a laissé fuiter les données des passagers ?? Noms, emails, numéros de passeport. Incroyable",
                   "Mail de {bn} : mes données 'pourraient avoir été consultées'. Appelez ça une fuite de données",
                   "Fuite de données chez {b} : si vous avez volé avec eux depuis 3 ans, considérez que votre passeport circule"],
        "outage": ["Appli et site {b} en panne, impossible de s'enregistrer", "Enregistrement {bn} totalement en panne à {city}, file énorme"],
        "anger": ["Plus jamais {b}. Vous aviez une mission : protéger mes données", "Le silence de {b} en ce moment est gênant"],
        "refund": ["Je veux être remboursé par {b}, pas un avoir",
                   "{bat} vol annulé à cause de votre panne et le formulaire de remboursement ne marche pas"],
        "legal": ["Une action collective contre {bn} pour la fuite de données se prépare déjà",
                  "Un cabinet d'avocats réunit les victimes pour une plainte contre {bn}"],
        "regulator": ["La fuite chez {b}, c'est un cas d'école RGPD. Portez plainte auprès de l'autorité de protection des données",
                      "L'autorité de protection des données enquête sur la fuite chez {bn}"],
        "compare": ["Fini {b}. Le mois prochain je vole avec {o}"],
        "question": ["{bat} mes données font partie de la fuite ? Comment le savoir ?"],
        "quote": ["Ça sent très mauvais pour {b}", "Et {bn} ne dit toujours rien ?"],
    },
    "pt": {
        "breach": ["A {b} vazou dados de passageiros?? Nomes, e-mails, número de passaporte. Inacreditável",
                   "Recebi um e-mail da {bn} dizendo que meus dados 'podem ter sido acessados'. Isso é vazamento de dados",
                   "Vazamento de dados na {b}: se você voou com eles nos últimos 3 anos, seu passaporte pode estar exposto"],
        "outage": ["App e site da {b} fora do ar, impossível fazer check-in", "Check-in da {bn} em {city} totalmente parado, fila enorme"],
        "anger": ["Nunca mais voo de {b}. Era só proteger meus dados", "O silêncio da {b} agora é vergonhoso"],
        "refund": ["Quero reembolso da {b}, não voucher", "{bat} meu voo foi cancelado pela pane e o formulário de reembolso também não funciona"],
        "legal": ["Já tem escritório preparando ação coletiva contra a {bn} pelo vazamento",
                  "Processo contra a {bn} por vazamento de dados deve sair essa semana"],
        "regulator": ["Autoridade de proteção de dados abre investigação sobre vazamento na {bn}",
                      "Isso da {b} é caso de GDPR e LGPD. Registrem reclamação no regulador"],
        "compare": ["Chega de {b}. Mês que vem vou de {o}"],
        "question": ["{bat} meus dados estão no vazamento? Como eu confiro?"],
        "quote": ["Isso está muito feio para a {b}", "E a {bn} ainda não falou nada?"],
    },
}
_CRISIS_HEADLINES = {
    "en": ["{bn} confirms data breach affecting passenger records", "{bn} hit by outage as data breach exposes passport details",
           "Regulator opens inquiry into {bn} data leak", "{bn} faces class action lawsuit over passenger data breach",
           "{bn} shares fall as breach and outage disrupt check-in", "What {bn} passengers need to know about the data breach",
           "{bn} outage strands travellers at {city}", "{bn} offers refunds as systems outage enters second hour"],
    "es": ["{bn} confirma una filtración de datos de pasajeros", "Caída informática en {bn} tras la filtración de datos",
           "Investigan a {bn} por la filtración de datos de pasajeros", "Demanda colectiva contra {bn} por la filtración"],
    "de": ["{bn} bestätigt Datenleck bei Passagierdaten", "IT-Ausfall bei {bn}: Check-in an mehreren Flughäfen gestört",
           "Datenschutzbehörde prüft Datenleck bei {bn}", "Sammelklage gegen {bn} wegen Datenleck angekündigt"],
    "fr": ["{bn} confirme une fuite de données de passagers", "Panne géante chez {bn} après la fuite de données",
           "L'autorité de protection des données ouvre une enquête sur {bn}", "Action collective en vue contre {bn}"],
    "pt": ["{bn} confirma vazamento de dados de passageiros", "Pane na {bn} afeta check-in em aeroportos",
           "Autoridade investiga vazamento de dados na {bn}", "{bn} enfrenta ação coletiva por vazamento de dados"],
}
_CRISIS_LEDES = {
    "en": ["The airline said it was investigating unauthorised access to a booking system and had informed the data protection regulator.",
           "Passengers reported check-in problems at several airports, including {city}.",
           "A spokesperson said refunds would be offered to customers whose flights were disrupted.",
           "Lawyers said a class action was being prepared on behalf of affected customers.",
           "Under GDPR, companies must notify regulators within 72 hours of discovering a breach."],
    "es": ["La aerolínea asegura que investiga un acceso no autorizado y que ha informado al regulador.",
           "Los pasajeros denuncian problemas de facturación en varios aeropuertos, entre ellos {city}."],
    "de": ["Die Airline untersucht nach eigenen Angaben einen unbefugten Zugriff und hat die Datenschutzbehörde informiert.",
           "Passagiere berichten von Problemen beim Check-in an mehreren Flughäfen, darunter {city}."],
    "fr": ["La compagnie dit enquêter sur un accès non autorisé et avoir prévenu le régulateur.",
           "Des passagers signalent des problèmes d'enregistrement dans plusieurs aéroports, dont {city}."],
    "pt": ["A companhia diz investigar um acesso não autorizado e que informou o regulador.",
           "Passageiros relatam problemas no check-in em vários aeroportos, incluindo {city}."],
}
_CRISIS_ORIGIN = ("Heads up: an open database with what looks like {bn} passenger records (names, emails, passport numbers) "
                  "has been sitting exposed. I notified them hours ago, no response. This is a data breach. Thread 🧵")
_CRISIS_STATEMENTS = [
    ("We are aware that some customer data may have been accessed without authorisation and that check-in systems are "
     "disrupted. We have informed the regulator and are working urgently to restore service. Updates from {bn}: https://{dom}/statement"),
    ("Update: check-in is being restored airport by airport. Customers whose flights were cancelled can request a full refund at "
     "https://{dom}/refund. We will contact everyone whose data was affected. – {bn}"),
]
_STATEMENT_MINUTES = ((5.0, 7.0), (11.0, 13.0))  # statement, then update (for a 15-minute crisis)
_CRISIS_REFERENCE_MIN = 15.0
_CRISIS_PHASES = (  # (until minute, weights by kind)
    (3.0, {"breach": 0.45, "outage": 0.25, "anger": 0.25, "question": 0.05}),
    (8.0, {"breach": 0.20, "outage": 0.20, "anger": 0.20, "refund": 0.15, "legal": 0.08, "regulator": 0.07,
           "question": 0.05, "compare": 0.05}),
    (math.inf, {"breach": 0.10, "outage": 0.10, "anger": 0.15, "refund": 0.15, "legal": 0.20, "regulator": 0.15,
                "question": 0.05, "compare": 0.10}),
)

# ---------------------------------------------------------------------------------------------
# Watchlists and term matching
# ---------------------------------------------------------------------------------------------

def load_watchlists(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Read and check a watchlists folder or file (default: the bundled folder) with the services'
    own loader, so the generator and the pipeline can never disagree about what a watchlist is."""
    p = Path(path) if path is not None else DEFAULT_WATCHLISTS
    try:
        loaded = WatchlistSet.from_file(p)
    except EarfulValidationError as exc:
        raise ValueError(str(exc)) from exc
    return [{"id": w.id, "name": w.name, "kind": w.kind, "handles": list(w.handles), "query": w.query}
            for w in loaded.watchlists.values()]


class TermMatcher:
    """Which watchlists a text names (the services' matcher); checks every generated text."""

    def __init__(self, watchlists: Sequence[Mapping[str, Any]]) -> None:
        self._order = [w["id"] for w in watchlists]
        self._set = WatchlistSet([Watchlist(w["id"], w.get("name", w["id"]), w.get("kind", "brand"),
                                            tuple(w.get("terms", ())), tuple(w.get("handles", ())),
                                            query=w.get("query")) for w in watchlists])

    def match(self, text: str) -> list[str]:
        """Ids of the watchlists whose queries match `text`, in watchlist order."""
        found = {m.watchlist_id for m in self._set.match(text)}
        return [wid for wid in self._order if wid in found]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------

def _iso(ms: int) -> str:
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def _to_ms(dt: datetime) -> int:
    return (dt.astimezone(UTC) - _EPOCH) // _MS


def _diurnal(hour: float) -> float:
    hour %= 24.0
    i = int(hour)
    f = hour - i
    return _DIURNAL[i] * (1.0 - f) + _DIURNAL[(i + 1) % 24] * f


def _pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")


def _slug(text: str, words: int = 8) -> str:
    parts = re.findall(r"[a-z0-9]+", _ascii(text).lower())
    return "-".join(parts[:words]) or "post"


def _sentence(text: str) -> str:
    """End a template sentence with punctuation (for bodies where it is followed by more text)."""
    return text if text.endswith((".", "!", "?", "…")) else text + "."


_B32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _b36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if n == 0:
            return out


def _thinned(rng: random.Random, t0: float, t1: float, lam_max: float, rate: Any) -> list[int]:
    """Arrival times (ms) of a Poisson process with intensity rate(t) <= lam_max on [t0, t1)."""
    out: list[int] = []
    if lam_max <= 0.0 or t1 <= t0:
        return out
    t = t0
    while True:
        t += rng.expovariate(lam_max)
        if t >= t1:
            return out
        if rng.random() * lam_max < rate(t):
            out.append(int(t))


def _crisis_shape(minutes: float, duration: float) -> float:
    """Relative crisis intensity: linear ramp, plateau for a fifth of the duration, then decay."""
    if minutes < 0.0 or minutes > duration:
        return 0.0
    ramp = min(_CRISIS_RAMP_MIN, duration / 2.0)
    plateau = 0.2 * duration
    tau = max((duration - ramp - plateau) / 3.2, 0.25)
    if minutes < ramp:
        return minutes / ramp
    if minutes < ramp + plateau:
        return 1.0
    return math.exp(-(minutes - ramp - plateau) / tau)


class _Slots(dict):  # type: ignore[type-arg]
    """Template values, drawn lazily on first use so each template only consumes what it needs."""

    def __init__(self, gen: "_Generator", lang: str, brand: Mapping[str, Any] | None,
                 other: Mapping[str, Any] | None, formal: bool = False, **fixed: str) -> None:
        super().__init__(fixed)
        self.gen, self.lang, self.brand, self.other, self.formal = gen, lang, brand, other, formal

    def __missing__(self, key: str) -> str:
        value = self.gen._slot(key, self)
        self[key] = value
        return value


# ---------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------

class _Generator:
    """One run: arrivals first, then mentions in time order, so replies and reposts can only
    point at posts that already exist; help-desk answers are added last."""

    def __init__(self, seed: int, start_ms: int, end_ms: int, crisis_at_ms: int | None, crisis_minutes: float,
                 rate_scale: float, watchlists: list[dict[str, Any]]) -> None:
        self.seed = seed
        self.start_ms, self.end_ms = start_ms, end_ms
        self.crisis_at_ms, self.crisis_minutes = crisis_at_ms, crisis_minutes
        self.rate_scale = rate_scale
        self.watchlists = watchlists
        self.wl = {w["id"]: w for w in watchlists}
        self.matcher = TermMatcher(watchlists)
        self.rng = random.Random(f"{seed}/content")
        self.brands: dict[str, dict[str, Any]] = {}
        for w in watchlists:
            prof = _PROFILES.get(w["id"])
            if prof is None:
                raise ValueError(f"watchlist {w['id']!r} has no sample profile; known: {', '.join(_PROFILES)}")
            handles = w["handles"] or [w["name"].replace(" ", "")]
            helpdesk = next((h for h in handles[1:] if re.search(r"help|support|care", h, re.I)), handles[-1])
            competitor = prof["competitor"] if prof["competitor"] in self.wl else None
            self.brands[w["id"]] = {**prof, "id": w["id"], "name": w["name"], "handles": handles, "help": helpdesk,
                                    "main": handles[0], "competitor": competitor, "tag": "#" + w["name"].replace(" ", "")}
            own = TermMatcher([w])
            for form in (w["name"], "@" + handles[0], "@" + helpdesk, self.brands[w["id"]]["tag"]):
                if not own.match(form):
                    raise ValueError(f"watchlist {w['id']!r}: its terms must match its name, handles and hashtag ({form!r})")
        self.records: list[dict[str, Any]] = []
        self.by_key: dict[tuple[str, str], dict[str, Any]] = {}
        self.ids: dict[str, set[str]] = {s: set() for s in SOURCES}
        self.posts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.author_ids: dict[str, set[str]] = {s: set() for s in SOURCES}
        self.handles_taken: dict[str, set[str]] = {s: set() for s in SOURCES}
        self.official: dict[tuple[str, str], dict[str, Any]] = {}
        self.seen_texts: set[str] = set()

    # --- slots -----------------------------------------------------------------------------

    def _brand_form(self, b: Mapping[str, Any], formal: bool) -> str:
        if formal:
            return b["name"]
        r = self.rng.random()
        if r < 0.47:
            return b["name"]
        if r < 0.78:
            return "@" + b["main"]
        if r < 0.90:
            return b["tag"]
        return b["name"].lower()

    def _slot(self, key: str, s: _Slots) -> str:
        rng, lang = self.rng, s.lang
        b = s.brand
        if key == "b":
            return self._brand_form(b, s.formal)
        if key == "bn":
            return b["name"]
        if key == "bat":
            return "@" + (b["main"] if rng.random() < 0.6 else b["help"])
        if key == "o":
            return self._brand_form(s.other, s.formal)
        if key == "on":
            return s.other["name"]
        if key == "cash":
            return b["cashtag"]
        if key == "dom":
            return b["domain"]
        if key == "ref":
            return _REF[lang].get(b["sector"], _REF[lang]["airline"])
        if key == "city":
            return rng.choice(_CITIES[lang])
        if key == "city2":
            return rng.choice([c for c in _CITIES[lang] if c != s["city"]])
        if key == "n":
            return str(rng.randrange(100, 3000))
        if key == "gate":
            return f"{rng.choice('ABCDEFGK')}{rng.randrange(1, 60)}"
        if key == "mins":
            return str(rng.randrange(15, 190, 5))
        if key == "hrs":
            return str(rng.randrange(2, 10))
        if key == "days":
            return str(rng.randrange(3, 40))
        if key == "weeks":
            return str(rng.randrange(2, 13))
        if key == "pct":
            return str(rng.randrange(3, 19))
        if key == "pct2":
            return str(rng.randrange(76, 95))
        if key == "k2":
            return str(rng.choice([12, 18, 20, 24, 30, 40, 50, 60, 85, 120]))
        if key == "speed":
            return str(rng.randrange(40, 950, 10))
        if key == "ver":
            return f"{rng.randrange(4, 8)}.{rng.randrange(0, 10)}"
        if key == "day":
            return rng.choice(_WEEKDAYS[lang])
        if key == "agent":
            return rng.choice(_AGENTS[lang])
        if key == "amt":
            v = rng.choice([15, 19, 25, 29, 35, 40, 45, 49, 60, 75, 89, 99, 120, 150, 180, 240])
            if lang == "en":
                return rng.choice(["$", "£", "€"]) + str(v)
            if lang == "pt" and rng.random() < 0.6:
                return f"R$ {v * 5}"
            return f"{v} €" if rng.random() < 0.7 else f"{v}€"
        raise KeyError(key)

    def _fill(self, template: str, slots: _Slots) -> str:
        return template.format_map(slots)

    def _closer(self, lang: str, kind: str, tone: str) -> str:
        mood = "question" if kind == "question" else ("negative" if tone == "negative" else "other")
        return self.rng.choice(_REDDIT_CLOSERS[lang][mood])

    def _lede(self, ledes: Sequence[str], slots: _Slots) -> str:
        """One or two lede sentences, so syndicated-looking items still differ a little."""
        picked = self.rng.sample(list(ledes), k=1 + (len(ledes) > 2 and self.rng.random() < 0.45))
        return " ".join(self._fill(t, slots) for t in picked)

    # --- authors ---------------------------------------------------------------------------

    def _followers(self, source: str) -> int:
        rng = self.rng
        if source == "reddit":
            return int(rng.lognormvariate(1.2, 1.3))
        if source == "blog":
            return int(rng.lognormvariate(6.3, 1.2))
        if rng.random() < 0.012:
            return min(int(rng.paretovariate(1.1) * 25_000), 4_000_000)
        return int(rng.lognormvariate(5.1, 1.6))

    def _new_author_id(self, source: str) -> str:
        while True:
            aid = f"u{self.rng.randrange(10_000, 2_000_000_000)}"
            if aid not in self.author_ids[source]:
                self.author_ids[source].add(aid)
                return aid

    def _unique_handle(self, source: str, handle: str) -> str:
        taken = self.handles_taken[source]
        base, n = handle, 1
        while handle.lower() in taken:
            n += 1
            handle = f"{base}{n}"
        taken.add(handle.lower())
        return handle

    def _make_author(self, source: str, lang: str, sector: str | None) -> dict[str, Any]:
        rng = self.rng
        first, last = rng.choice(_FIRST[lang]), rng.choice(_LAST[lang])
        fa, la = _ascii(first).lower(), _ascii(last).lower()
        style = rng.random()
        if source == "reddit":
            if style < 0.55:
                adj, noun = rng.choice(_REDDIT_WORDS[0]), rng.choice(_REDDIT_WORDS[1])
                handle = f"{adj}_{noun}_{rng.randrange(10, 9999)}"
            else:
                handle = rng.choice([f"{fa}{la[0]}{rng.randrange(1, 99)}", f"throwaway_{rng.randrange(1000, 99999)}",
                                     f"{la}_{fa}", f"not_{fa}_{rng.randrange(10, 99)}"])
            handle = self._unique_handle(source, handle)
            display = handle
        elif source == "blog":
            handle = self._unique_handle(source, f"{fa}{rng.choice(_BLOG_SUFFIX.get(sector, _BLOG_SUFFIX[None]))}")
            display = f"{first} {last}"
        else:
            if style < 0.35:
                raw = f"{fa}_{la}"
            elif style < 0.6:
                raw = f"{fa}{la}{rng.choice(_HANDLE_SUFFIX)}"
            elif style < 0.8:
                raw = f"{fa[0]}{la}{rng.randrange(1, 100)}"
            else:
                raw = f"{fa}{rng.choice(_HANDLE_SUFFIX) or '_'}{rng.randrange(1, 1000)}"
            raw = re.sub(r"[^a-z0-9_]", "", raw)[:15] if source == "twitter" else re.sub(r"[^a-z0-9_.]", "", raw)
            handle = self._unique_handle(source, raw)
            if source == "mastodon":
                instances = _MASTODON_INSTANCES + _MASTODON_BY_LANG.get(lang, [])
                handle = f"{handle}@{rng.choice(instances)}"
            elif source == "bluesky":
                handle = f"{handle.replace('_', '-')}.bsky.example"
            display = rng.choice([f"{first} {last}", f"{first} {last}", first, f"{first} {last[0]}.",
                                  f"{first} ✈️" if sector == "airline" else f"{first} 🌿"])
        author = {"id": self._new_author_id(source), "handle": handle, "display_name": display,
                  "followers": self._followers(source)}
        return {"author": author, "first": first}

    def _author(self, source: str, lang: str, sector: str | None) -> dict[str, Any]:
        """Reuse authors like real streams do: a few post often, most post once (a Chinese restaurant process)."""
        if source == "news":
            handle, display, followers = self.rng.choice(_OUTLETS[lang])
            key = ("news", handle)
            if key not in self.official:
                self.official[key] = {"author": {"id": self._new_author_id("news"), "handle": handle,
                                                 "display_name": display, "followers": followers}, "first": display}
            return self.official[key]
        alpha = {"twitter": 350.0, "bluesky": 150.0, "mastodon": 120.0, "reddit": 250.0, "blog": 25.0}[source]
        posts = self.posts.setdefault((source, lang), [])
        if posts and self.rng.random() >= alpha / (alpha + len(posts)):
            a = self.rng.choice(posts)
        else:
            a = self._make_author(source, lang, sector)
        posts.append(a)
        return a

    def _brand_account(self, brand: Mapping[str, Any], handle: str) -> dict[str, Any]:
        key = ("twitter", handle)
        if key not in self.official:
            author = {"id": self._new_author_id("twitter"), "handle": handle, "display_name": (
                f"{brand['name']} Help" if handle == brand["help"] else brand["name"]),
                "followers": brand["followers"].get(handle, 25_000)}
            self.official[key] = {"author": author, "first": brand["name"]}
        return self.official[key]

    # --- ids and urls ----------------------------------------------------------------------

    def _source_id(self, source: str, ms: int, reddit_comment: bool = False) -> str:
        rng = self.rng
        for _ in range(1000):
            if source == "twitter":
                sid = str(((ms - _TWITTER_EPOCH_MS) << 22) | (rng.randrange(1024) << 12) | rng.randrange(4096))
            elif source == "mastodon":
                sid = str((ms << 16) | rng.getrandbits(16))
            elif source == "bluesky":
                n = ((ms * 1000 + rng.randrange(1000)) << 10) | rng.randrange(1024)
                sid = "".join(_B32_SORTABLE[(n >> (5 * (12 - i))) & 31] for i in range(13))
            elif source == "reddit":
                secs = (ms - self.start_ms) // 1000
                if reddit_comment:
                    sid = "t1_" + _b36(int("m8q0000", 36) + secs * 97 + rng.randrange(97))
                else:
                    sid = "t3_" + _b36(int("1p3a000", 36) + secs * 11 + rng.randrange(11))
            else:
                sid = f"{rng.getrandbits(64):016x}"
            if sid not in self.ids[source]:
                self.ids[source].add(sid)
                return sid
        raise RuntimeError(f"could not draw a unique {source} id")

    def _url(self, source: str, sid: str, author: Mapping[str, Any], ms: int, text: str,
             thread: tuple[str, str] | None) -> str:
        handle = author["handle"]
        if source == "twitter":
            return f"https://twitter.example/{handle}/status/{sid}"
        if source == "mastodon":
            user, _, host = handle.partition("@")
            return f"https://{host or 'mastodon.example'}/@{user}/{sid}"
        if source == "bluesky":
            return f"https://bsky.example/profile/{handle}/post/{sid}"
        if source == "reddit":
            sub, post = thread or ("travel", sid[3:])
            if sid.startswith("t1_"):
                return f"https://reddit.example/r/{sub}/comments/{post}/comment/{sid[3:]}/"
            return f"https://reddit.example/r/{sub}/comments/{post}/{_slug(text)}/"
        day = (_EPOCH + timedelta(milliseconds=ms))
        if source == "news":
            return f"https://{handle}.example/{day:%Y/%m/%d}/{_slug(text)}"
        return f"https://{handle}.example/{day:%Y/%m}/{_slug(text)}/"

    # --- text shaping ----------------------------------------------------------------------

    def _decorate(self, text: str, source: str, lang: str, tone: str, sector: str | None,
                  brand: Mapping[str, Any] | None, question: bool = False) -> str:
        """Social-media garnish: an opener, a tail remark, hashtags, emoji, a link, casual lower case."""
        rng = self.rng
        if source not in SOCIAL:
            return text
        if rng.random() < (0.35 if sector == "crisis" else 0.22):
            text = f"{rng.choice(_OPENERS[lang]['question' if question else tone])} {text}"
        if not question and rng.random() < 0.22:
            tail = rng.choice(_TAILS[lang][tone])
            sep = " " if text.endswith((".", "!", "?")) else ". "
            text = f"{text}{sep}{tail}"
        tags: list[str] = []
        p_tags = {"mastodon": 0.6, "twitter": 0.3, "bluesky": 0.15}[source]
        if rng.random() < p_tags:
            pool = _HASHTAGS[sector if sector in _HASHTAGS else None][lang]
            tags = rng.sample(pool, k=min(len(pool), 1 + (rng.random() < 0.35)))
        if brand is not None and rng.random() < 0.08 and brand["tag"].lower() not in text.lower():
            tags.append(brand["tag"])
        if tags:
            text = f"{text} {' '.join(tags)}"
        if lang == "en" and source != "mastodon" and rng.random() < 0.06:
            text = text.lower()
        if rng.random() < 0.3:
            text = f"{text} {rng.choice(_EMOJI[tone])}"
            if rng.random() < 0.25:
                text += rng.choice(_EMOJI[tone])
        if rng.random() < 0.07:
            code = "".join(rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10))
            text = f"{text} https://t.example/{code}"
        return text

    def _engagement(self, source: str, followers: int, tone: str, crisis: bool, boost: float = 1.0) -> dict[str, int]:
        rng = self.rng
        base = (0.4 + (max(followers, 0) ** 0.55) * 0.08) * boost
        if tone == "negative":
            base *= 1.3
        if crisis:
            base *= rng.uniform(4.0, 12.0)
        likes = int(rng.lognormvariate(math.log(base), 1.0))
        if source == "reddit":
            return {"likes": likes, "reposts": 0, "replies": int(likes * rng.uniform(0.1, 0.6))}
        share = rng.uniform(0.3, 0.9) if crisis else rng.uniform(0.05, 0.35)
        return {"likes": likes, "reposts": int(likes * share), "replies": int(likes * rng.uniform(0.03, 0.25))}

    # --- records ---------------------------------------------------------------------------

    def _add(self, *, ms: int, source: str, lang: str, text: str, who: Mapping[str, Any], scenario: str,
             watchlists: list[str], tone: str, kind: str, parent: dict[str, Any] | None = None,
             repost_of: dict[str, Any] | None = None, boost: float = 1.0, sub: str | None = None) -> dict[str, Any]:
        found = self.matcher.match(text)
        if found != [w for w in self.wl if w in watchlists]:
            raise AssertionError(f"text names {found}, expected {watchlists}: {text!r}")
        target = parent or repost_of
        comment = source == "reddit" and target is not None
        sid = self._source_id(source, ms, reddit_comment=comment)
        if source == "reddit":
            thread = target["thread"] if target is not None else (sub or "travel", sid[3:])
        else:
            thread = None
        author = who["author"]
        if source in ("twitter", "bluesky"):
            declared: str | None = lang
        elif source == "mastodon":
            declared = lang if self.rng.random() < 0.85 else None
        else:
            declared = None
        mention = {
            "source": source, "source_id": sid, "text": text, "created_at": _iso(ms),
            "url": self._url(source, sid, author, ms, text, thread), "lang": declared,
            "author": dict(author),
            "in_reply_to": parent["mention"]["source_id"] if parent is not None else None,
            "reposted_from": repost_of["mention"]["source_id"] if repost_of is not None else None,
            "engagement": self._engagement(source, author["followers"], tone, scenario == "crisis", boost),
        }
        rec = {"ms": ms, "mention": mention, "scenario": scenario, "thread": thread, "who": who,
               "ann": {"watchlists": found, "lang": lang, "tone": tone, "kind": kind},
               "n_replies": 0, "n_reposts": 0}
        if parent is not None:
            parent["n_replies"] += 1
        if repost_of is not None:
            repost_of["n_reposts"] += 1
        self.records.append(rec)
        self.by_key[(source, sid)] = rec
        return rec

    def _compose(self, build: Any, expected: list[str], attempts: int = 40) -> str:
        """Draw texts until one names exactly the expected watchlists (templates almost always do).

        Exact repeats of earlier texts are mostly re-drawn: real streams repeat themselves a little
        (copy-paste complaints, syndicated news), not as often as a finite set of templates would.
        """
        want = [w for w in self.wl if w in expected]
        fallback = None
        for _ in range(attempts):
            text = build()
            if self.matcher.match(text) != want:
                continue
            if text not in self.seen_texts or self.rng.random() < _KEEP_REPEAT:
                self.seen_texts.add(text)
                return text
            fallback = fallback or text
        if fallback is not None:
            return fallback
        raise RuntimeError(f"could not compose a text naming exactly {want}")

    def _choose_parent(self, ms: int, source: str, pred: Any, horizon_ms: int = 2 * _HOUR_MS,
                       weighted: bool = False) -> dict[str, Any] | None:
        cands = []
        for rec in reversed(self.records):
            if ms - rec["ms"] > horizon_ms:
                break
            if rec["ms"] < ms and rec["mention"]["source"] == source and pred(rec):
                cands.append(rec)
            if len(cands) >= 150:
                break
        if not cands:
            return None
        if weighted:
            return self.rng.choices(cands, weights=[c["mention"]["author"]["followers"] + 50 for c in cands])[0]
        return self.rng.choice(cands)

    # --- baseline brand mentions -----------------------------------------------------------

    def brand_mention(self, ms: int, wid: str, region: str) -> None:
        rng = self.rng
        b = self.brands[wid]
        sector = b["sector"]
        lang = _pick(rng, _REGIONS[region]["langs"])
        source = _pick(rng, _SOURCE_WEIGHTS[lang])
        other = self.brands.get(b["competitor"]) if b["competitor"] else None

        # A reply to someone's earlier post about the same brand.
        if source in SOCIAL + ("reddit",) and rng.random() < 0.07:
            parent = self._choose_parent(ms, source, lambda r: r["scenario"] == "baseline"
                                         and wid in r["ann"]["watchlists"] and r["ann"]["kind"] not in ("news", "brand_reply"))
            if parent is not None:
                ptone = parent["ann"]["tone"]
                plang = parent["ann"]["lang"]
                pool = _USER_REPLIES[plang][ptone]
                at = "" if source == "reddit" else "@" + parent["mention"]["author"]["handle"] + " "

                def build_reply() -> str:
                    return at + self._fill(rng.choice(pool), _Slots(self, plang, b, None))
                text = self._compose(build_reply, [wid])
                self._add(ms=ms, source=source, lang=plang, text=text, who=self._author(source, plang, sector),
                          scenario="baseline", watchlists=[wid], tone=ptone, kind="reply", parent=parent)
                return

        if source == "news":
            def build_news() -> str:
                heads = _HEADLINES[lang][sector]
                ledes = _LEDES[lang].get(sector, []) + _LEDES[lang][None]
                s = _Slots(self, lang, b, other, formal=True)
                return f"{self._fill(rng.choice(heads), s)}\n\n{self._lede(ledes, s)}"
            text = self._compose(build_news, [wid])
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                      scenario="baseline", watchlists=[wid], tone="neutral", kind="news")
            return

        kinds = dict(_KIND_WEIGHTS[sector])
        available = _SOCIAL[lang][sector]
        for k in list(kinds):
            if k not in available or (k == "compare" and other is None) or (k == "finance" and not b["cashtag"]):
                del kinds[k]
        kind = _pick(rng, kinds)
        tone = _KIND_TONE[kind]
        names = [wid] + ([other["id"]] if kind == "compare" and other else [])

        if source == "blog":
            titles = [t for t in _BLOG_TITLES[lang][sector] if ("{o" in t) == (kind == "compare")]
            if not titles:  # no comparison titles in this language: write a plain review
                kind, names = "neutral", [wid]
                titles = [t for t in _BLOG_TITLES[lang][sector] if "{o" not in t]
            tone = _KIND_TONE[kind]

            def build_blog() -> str:
                head = self._fill(rng.choice(titles), _Slots(self, lang, b, other, formal=True))
                body = self._fill(rng.choice(available[kind]), _Slots(self, lang, b, other))
                return f"{head}\n\n{_sentence(body)}"
            text = self._compose(build_blog, names)
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                      scenario="baseline", watchlists=names, tone=tone, kind=kind)
            return

        if source == "reddit":
            subs = _SUBREDDITS[sector] + (_SUBREDDITS_BY_LANG.get(lang, []) * 3)

            def build_reddit() -> str:
                s = _Slots(self, lang, b, other)  # shared, so the body's city/brand agree with the title
                pool = available[kind]
                picked = rng.sample(pool, k=2) if len(pool) > 1 and rng.random() < 0.6 else [rng.choice(pool)]
                title = self._fill(picked[0], s)
                closer = self._closer(lang, kind, tone)
                if len(picked) == 1:
                    return f"{title}\n\n{closer}"
                return f"{title}\n\n{_sentence(self._fill(picked[1], s))} {closer}"
            text = self._compose(build_reddit, names)
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                      scenario="baseline", watchlists=names, tone=tone, kind=kind, sub=rng.choice(subs))
            return

        # Twitter / Bluesky / Mastodon; now and then a quote of an earlier post.
        quoted = None
        if source in ("twitter", "bluesky") and rng.random() < 0.015:
            quoted = self._choose_parent(ms, source, lambda r: r["scenario"] == "baseline" and wid in r["ann"]["watchlists"],
                                         weighted=True)

        def build_social() -> str:
            text = self._fill(rng.choice(available[kind]), _Slots(self, lang, b, other))
            text = self._decorate(text, source, lang, tone, sector, b, question=kind == "question")
            if quoted is not None and source == "twitter":
                text = f"{text} {quoted['mention']['url']}"
            return text
        text = self._compose(build_social, names)
        self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, sector),
                  scenario="baseline", watchlists=names, tone=tone, kind=kind, repost_of=quoted)

    # --- chatter ---------------------------------------------------------------------------

    def chatter(self, ms: int, region: str) -> None:
        rng = self.rng
        lang = _pick(rng, _REGIONS[region]["langs"])
        source = _pick(rng, _SOURCE_WEIGHTS[lang])
        if source in ("news", "blog"):
            def build() -> str:
                s = _Slots(self, lang, None, None)
                return f"{rng.choice(_CHATTER_HEADLINES[lang])}\n\n{self._lede(_LEDES[lang][None][1:], s)}"
        elif source == "reddit":
            def build() -> str:
                first = self._fill(rng.choice(_CHATTER[lang]), _Slots(self, lang, None, None))
                return f"{first}\n\n{self._closer(lang, 'chatter', 'neutral')}"
        else:
            def build() -> str:
                text = self._fill(rng.choice(_CHATTER[lang]), _Slots(self, lang, None, None))
                return self._decorate(text, source, lang, "neutral", None, None)
        text = self._compose(build, [])
        kind = "news" if source == "news" else "chatter"
        subs = _SUBREDDITS[None] + _SUBREDDITS_BY_LANG.get(lang, [])
        self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, None),
                  scenario="baseline", watchlists=[], tone="neutral", kind=kind, sub=rng.choice(subs))

    # --- crisis ----------------------------------------------------------------------------

    def crisis_mention(self, ms: int, first: bool) -> None:
        rng = self.rng
        b = self.brands[CRISIS_WATCHLIST]
        other = self.brands.get(b["competitor"]) if b["competitor"] else None
        minute = (ms - self.crisis_at_ms) / _MINUTE_MS
        if first:
            who = self.official.get(("twitter", "breachwatch_kat"))
            if who is None:
                who = {"author": {"id": self._new_author_id("twitter"), "handle": "breachwatch_kat",
                                  "display_name": "Kat Ramos | infosec", "followers": 84_213}, "first": "Kat"}
                self.official[("twitter", "breachwatch_kat")] = who
            text = self._fill(_CRISIS_ORIGIN, _Slots(self, "en", b, None, formal=True))
            self._add(ms=ms, source="twitter", lang="en", text=text, who=who, scenario="crisis",
                      watchlists=[CRISIS_WATCHLIST], tone="negative", kind="origin", boost=3.0)
            return

        lang = _pick(rng, _CRISIS_LANGS)
        source = _pick(rng, _CRISIS_SOURCES)
        texts = _CRISIS[lang]
        is_crisis = lambda r: r["scenario"] == "crisis"  # noqa: E731

        # Reposts: plain retweets and quote posts of earlier crisis posts with reach.
        if source in ("twitter", "bluesky") and rng.random() < 0.16:
            parent = self._choose_parent(ms, source, lambda r: is_crisis(r) and r["ann"]["kind"] != "repost",
                                         horizon_ms=_HOUR_MS, weighted=True)
            if parent is not None:
                if source == "twitter" and rng.random() < 0.25:
                    ph = parent["mention"]["author"]["handle"]
                    text = f"RT @{ph}: {parent['mention']['text']}"
                    if len(text) > 280:
                        text = text[:279] + "…"
                    self._add(ms=ms, source=source, lang=parent["ann"]["lang"], text=text,
                              who=self._author(source, parent["ann"]["lang"], "airline"), scenario="crisis",
                              watchlists=parent["ann"]["watchlists"], tone=parent["ann"]["tone"], kind="repost",
                              repost_of=parent)
                    return

                def build_quote() -> str:
                    t = self._fill(rng.choice(texts["quote"]), _Slots(self, lang, b, other))
                    t = self._decorate(t, source, lang, "negative", "crisis", b)
                    return f"{t} {parent['mention']['url']}" if source == "twitter" else t
                text = self._compose(build_quote, [CRISIS_WATCHLIST])
                self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, "airline"),
                          scenario="crisis", watchlists=[CRISIS_WATCHLIST], tone="negative", kind="quote",
                          repost_of=parent)
                return

        if source == "news":
            def build_news() -> str:
                s = _Slots(self, lang, b, other, formal=True)
                return f"{self._fill(rng.choice(_CRISIS_HEADLINES[lang]), s)}\n\n{self._lede(_CRISIS_LEDES[lang], s)}"
            text = self._compose(build_news, [CRISIS_WATCHLIST])
            self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, "airline"),
                      scenario="crisis", watchlists=[CRISIS_WATCHLIST], tone="negative", kind="news", boost=2.0)
            return

        weights = next(w for until, w in _CRISIS_PHASES if minute < until)
        if other is None:
            weights = {k: v for k, v in weights.items() if k != "compare"}
        kind = _pick(rng, weights)
        names = [CRISIS_WATCHLIST] + ([other["id"]] if kind == "compare" and other else [])
        tone = "neutral" if kind == "question" else "negative"

        parent = None
        if source != "blog" and rng.random() < 0.09:
            parent = self._choose_parent(ms, source, lambda r: is_crisis(r) and r["ann"]["kind"] not in ("repost", "news"),
                                         horizon_ms=_HOUR_MS, weighted=True)
        prefix = ""
        if parent is not None and source != "reddit":
            prefix = "@" + parent["mention"]["author"]["handle"] + " "

        def build() -> str:
            body = self._fill(rng.choice(texts[kind]), _Slots(self, lang, b, other))
            if source == "reddit":
                if parent is None:
                    return f"{body}\n\n{self._closer(lang, kind, tone)}"
                return body
            if source == "blog":
                title = self._fill(rng.choice(_CRISIS_HEADLINES[lang]), _Slots(self, lang, b, other, formal=True))
                return f"{title}\n\n{_sentence(body)}"
            return prefix + self._decorate(body, source, lang, tone, "crisis", b, question=kind == "question")
        text = self._compose(build, names)
        self._add(ms=ms, source=source, lang=lang, text=text, who=self._author(source, lang, "airline"),
                  scenario="crisis", watchlists=names, tone=tone, kind=kind, parent=parent,
                  sub=rng.choice(_SUBREDDITS["crisis"]))

    def crisis_statement(self, ms: int, index: int) -> None:
        """The airline's own statement a few minutes in, and an update later."""
        b = self.brands[CRISIS_WATCHLIST]
        text = self._fill(_CRISIS_STATEMENTS[index], _Slots(self, "en", b, None, formal=True))
        self._add(ms=ms, source="twitter", lang="en", text=text, who=self._brand_account(b, b["main"]),
                  scenario="crisis", watchlists=[CRISIS_WATCHLIST], tone="neutral", kind="statement")

    # --- brand help desks ------------------------------------------------------------------

    def brand_replies(self) -> None:
        """Help accounts answer some questions and complaints on Twitter, minutes later."""
        rng = self.rng
        for rec in list(self.records):
            m, ann = rec["mention"], rec["ann"]
            if m["source"] != "twitter" or not ann["watchlists"]:
                continue
            crisis = rec["scenario"] == "crisis"
            if crisis:
                if ann["kind"] not in ("refund", "question", "outage", "anger") or rng.random() >= 0.14:
                    continue
                wid, key, delay_median = CRISIS_WATCHLIST, "crisis", 6.0
            else:
                if ann["kind"] not in ("question", "complaint"):
                    continue
                wid = ann["watchlists"][0]
                if rng.random() >= self.brands[wid]["answer"][ann["kind"]]:
                    continue
                key, delay_median = ann["kind"], 14.0
            b = self.brands[wid]
            ms = rec["ms"] + max(20_000, int(rng.lognormvariate(math.log(delay_median), 0.7) * _MINUTE_MS))
            if ms >= self.end_ms:
                continue
            lang = ann["lang"]
            who = self._brand_account(b, b["help"])
            user = m["author"]["handle"]
            first = rec["who"]["first"].split()[0]
            s = _Slots(self, lang, b, None, formal=True, first=first)
            text = f"@{user} " + self._fill(rng.choice(_BRAND_REPLIES[lang][key]), s)
            self._add(ms=ms, source="twitter", lang=lang, text=text, who=who, scenario=rec["scenario"],
                      watchlists=[wid], tone="neutral", kind="brand_reply", parent=rec, boost=0.3)

    # --- the whole run ---------------------------------------------------------------------

    def arrivals(self) -> list[tuple[int, int, str, str, str]]:
        """All Poisson arrivals: (ms, order, type, watchlist, region), each process with its own RNG."""
        events: list[tuple[int, int, str, str, str]] = []
        t0, t1 = float(self.start_ms), float(self.end_ms)
        chatter_weight: dict[str, float] = {}
        for wid, b in self.brands.items():
            for region, weight in b["regions"].items():
                peak = b["peak_per_min"] * weight * self.rate_scale / _MINUTE_MS
                chatter_weight[region] = chatter_weight.get(region, 0.0) + peak
                off = _REGIONS[region]["utc_offset"]
                rate = (lambda t, p=peak, o=off: p * _diurnal(t / _HOUR_MS + o))
                rng = random.Random(f"{self.seed}/arrivals/{wid}/{region}")
                events += [(ms, 0, "brand", wid, region) for ms in _thinned(rng, t0, t1, peak, rate)]
        factor = CHATTER_SHARE / (1.0 - CHATTER_SHARE)
        for region, peak in sorted(chatter_weight.items()):
            peak *= factor
            off = _REGIONS[region]["utc_offset"]
            rate = (lambda t, p=peak, o=off: p * _diurnal(t / _HOUR_MS + o))
            rng = random.Random(f"{self.seed}/arrivals/chatter/{region}")
            events += [(ms, 1, "chatter", "", region) for ms in _thinned(rng, t0, t1, peak, rate)]
        if self.crisis_at_ms is not None and CRISIS_WATCHLIST in self.brands:
            cpeak = _CRISIS_PEAK_PER_MIN * max(self.rate_scale, 0.25) / _MINUTE_MS
            c0 = float(self.crisis_at_ms)
            c1 = min(t1, c0 + self.crisis_minutes * _MINUTE_MS)
            dur = self.crisis_minutes
            rate = (lambda t: cpeak * _crisis_shape((t - c0) / _MINUTE_MS, dur))
            rng = random.Random(f"{self.seed}/arrivals/crisis")
            events += [(ms, 2, "crisis", CRISIS_WATCHLIST, "") for ms in _thinned(rng, c0, c1, cpeak, rate)]
            for i, (lo, hi) in enumerate(_STATEMENT_MINUTES):
                ms = int(c0 + rng.uniform(lo, hi) * _MINUTE_MS * min(1.0, dur / _CRISIS_REFERENCE_MIN))
                if ms < c1:
                    events.append((ms, 3, "statement", CRISIS_WATCHLIST, str(i)))
        events.sort()
        return events

    def run(self) -> None:
        first_crisis = True
        for ms, _, kind, wid, region in self.arrivals():
            if kind == "brand":
                self.brand_mention(ms, wid, region)
            elif kind == "chatter":
                self.chatter(ms, region)
            elif kind == "crisis":
                self.crisis_mention(ms, first_crisis)
                first_crisis = False
            elif not first_crisis:  # the airline only reacts once the story is out
                self.crisis_statement(ms, int(region))
        self.brand_replies()
        for rec in self.records:  # engagement can't be below what the stream itself shows
            eng = rec["mention"]["engagement"]
            eng["replies"] = max(eng["replies"], rec["n_replies"])
            eng["reposts"] = max(eng["reposts"], rec["n_reposts"])
        self.records.sort(key=lambda r: (r["ms"], r["mention"]["source"], r["mention"]["source_id"]))


def _validate(seed: int, start: datetime, hours: float, crisis_at_hours: float | None, crisis_minutes: float,
              rate_scale: float) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (UTC)")
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and 0 < hours <= 24 * 14):
        raise ValueError(f"hours must be > 0 and at most 336, got {hours}")
    if not (math.isfinite(rate_scale) and 0 < rate_scale <= 20):
        raise ValueError(f"rate scale must be > 0 and at most 20, got {rate_scale}")
    if crisis_at_hours is not None:
        if not (math.isfinite(crisis_at_hours) and 0 <= crisis_at_hours < hours):
            raise ValueError(f"crisis must start within the stream: 0 <= crisis-at-hours < {hours:g}, got {crisis_at_hours:g}")
        if not (math.isfinite(crisis_minutes) and 0 < crisis_minutes <= 24 * 60):
            raise ValueError(f"crisis minutes must be > 0 and at most 1440, got {crisis_minutes:g}")


def generate_annotated(seed: int = DEFAULT_SEED, start: datetime = DEFAULT_START, hours: float = DEFAULT_HOURS,
                       crisis_at_hours: float | None = DEFAULT_CRISIS_AT_HOURS,
                       crisis_minutes: float = DEFAULT_CRISIS_MINUTES, rate_scale: float = 1.0,
                       watchlists: list[dict[str, Any]] | None = None,
                       ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """Like `generate`, plus the ground truth per line (watchlists named, true language, tone, kind).

    Why: the stream itself carries only what a source would send; tests and evaluations of the
    enrichment need to know what each line was meant to be.
    """
    _validate(seed, start, hours, crisis_at_hours, crisis_minutes, rate_scale)
    wls = load_watchlists() if watchlists is None else watchlists
    if crisis_at_hours is not None and CRISIS_WATCHLIST not in {w["id"] for w in wls}:
        raise ValueError(f"the crisis needs the {CRISIS_WATCHLIST!r} watchlist")
    start_ms = _to_ms(start)
    end_ms = start_ms + int(round(hours * _HOUR_MS))
    crisis_ms = None if crisis_at_hours is None else start_ms + int(round(crisis_at_hours * _HOUR_MS))
    gen = _Generator(seed, start_ms, end_ms, crisis_ms, crisis_minutes, rate_scale, wls)
    gen.run()
    lines = [{"mention": r["mention"], "scenario": r["scenario"]} for r in gen.records]
    annotations = [r["ann"] for r in gen.records]
    crisis_recs = [r for r in gen.records if r["scenario"] == "crisis"]
    crisis: dict[str, Any] | None = None
    if crisis_ms is not None:
        crisis = {"watchlist_id": CRISIS_WATCHLIST,
                  "start": crisis_recs[0]["mention"]["created_at"] if crisis_recs else None,
                  "end": crisis_recs[-1]["mention"]["created_at"] if crisis_recs else None,
                  "count": len(crisis_recs)}
    meta = {"seed": seed, "start": _iso(start_ms), "end": _iso(end_ms), "count": len(lines),
            "watchlists": [w["id"] for w in wls], "crisis": crisis, "generator": GENERATOR, "version": VERSION}
    return lines, meta, annotations


def generate(seed: int = DEFAULT_SEED, start: datetime = DEFAULT_START, hours: float = DEFAULT_HOURS,
             crisis_at_hours: float | None = DEFAULT_CRISIS_AT_HOURS, crisis_minutes: float = DEFAULT_CRISIS_MINUTES,
             rate_scale: float = 1.0, watchlists: list[dict[str, Any]] | None = None,
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate the sample stream: lines ``{"mention", "scenario"}`` sorted by time, and the meta dict.

    Why: one seeded function is the single source of the bundled sample, so anyone can rebuild or
    vary it (longer, busier, without the crisis) and get byte-identical results for the same input.
    ``crisis_at_hours=None`` leaves the crisis out; ``rate_scale`` scales baseline rates (the
    crisis scales too, but never below a quarter, so it stays visible in small test streams).
    """
    lines, meta, _ = generate_annotated(seed, start, hours, crisis_at_hours, crisis_minutes, rate_scale, watchlists)
    return lines, meta


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def _dump_line(line: Mapping[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def write(lines: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], out_dir: str | Path) -> None:
    """Write stream.jsonl.gz and stream.meta.json; gzip mtime is 0 so equal input gives equal bytes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        for line in lines:
            gz.write((_dump_line(line) + "\n").encode("utf-8"))
    (out / STREAM_FILE).write_bytes(buf.getvalue())
    (out / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def read_stream(path: str | Path | None = None) -> Iterator[dict[str, Any]]:
    """Yield the lines of a .jsonl or .jsonl.gz stream (default: the bundled sample), lazily."""
    p = Path(path) if path is not None else PACKAGE_DIR / STREAM_FILE
    opener = gzip.open if p.name.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for raw in fh:
            if raw.strip():
                yield json.loads(raw)


def read_meta(path: str | Path | None = None) -> dict[str, Any]:
    """The meta dict written next to a stream (default: the bundled sample's)."""
    p = Path(path) if path is not None else PACKAGE_DIR / META_FILE
    return json.loads(p.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

class _UsageError(Exception):
    pass


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of exiting, so `main` always returns a status."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def _parse_start(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {value!r}") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _parser(prog: str | None = None) -> _Parser:
    p = _Parser(prog=prog or "earful sample generate",
                description="Generate the seeded sample mention stream (stream.jsonl.gz + stream.meta.json).")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    p.add_argument("--start", type=_parse_start, default=DEFAULT_START,
                   help="start of the stream, RFC 3339 (default 2026-11-02T00:00:00Z)")
    p.add_argument("--hours", type=float, default=DEFAULT_HOURS, help="hours of history (default %(default)s)")
    p.add_argument("--crisis-at-hours", type=float, default=DEFAULT_CRISIS_AT_HOURS,
                   help="when the acme-air crisis starts, hours after start (default %(default)s)")
    p.add_argument("--no-crisis", action="store_true", help="leave the crisis out")
    p.add_argument("--crisis-minutes", type=float, default=DEFAULT_CRISIS_MINUTES,
                   help="how long the crisis lasts (default %(default)s)")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply all baseline rates (default %(default)s)")
    p.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output directory (default: the bundled sample's folder)")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: generate and write the stream; 0 on success, 2 on bad arguments or I/O errors."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except _Exit as exc:
        return exc.status
    crisis_at = None if args.no_crisis else args.crisis_at_hours
    try:
        lines, meta = generate(seed=args.seed, start=args.start, hours=args.hours, crisis_at_hours=crisis_at,
                               crisis_minutes=args.crisis_minutes, rate_scale=args.rate_scale)
        write(lines, meta, args.out)
    except (ValueError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    crisis = meta["crisis"]
    crisis_note = f", crisis {crisis['count']} from {crisis['start']}" if crisis else ", no crisis"
    print(f"{parser.prog}: wrote {meta['count']} mentions {meta['start']}..{meta['end']} (seed {meta['seed']}"
          f"{crisis_note}) to {Path(args.out) / STREAM_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
