"""The memories' vocabulary: slot value lists, and the Frame type that uses them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# fmt: off
# (hand-laid tables: one frame or value list a block, easier to read than one item a line)
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"]
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
# fmt: on
