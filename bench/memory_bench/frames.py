"""Every frame (the users' of frames_users, then general knowledge and procedures), and
the items of working memories."""

from __future__ import annotations

from bench.memory_bench.frames_users import USER_FRAMES
from bench.memory_bench.slots import (
    APIS,
    COMPANIES,
    CURRENCIES,
    ENVS,
    ERRORS,
    FEATURES,
    FORMATS,
    HOURS,
    KINDS,
    LINES,
    PLANS,
    POS,
    PRIORITIES,
    PRODUCTS,
    REPORT_TOOLS,
    REPORTS,
    ROOMS,
    SEATS,
    SERVICES,
    SETTINGS_,
    SOURCES,
    STORES,
    SYSTEMS,
    UNITS,
    WEEKDAYS,
    Frame,
    _amounts,
    _city,
    nums,
)

# fmt: off
# (hand-laid tables: one frame or value list a block, easier to read than one item a line)
FRAMES: tuple[Frame, ...] = (
    *USER_FRAMES,
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
# fmt: on
