"""Demo data around Austin, Texas: categories, businesses and events relative to now.

Idempotent: rows are found by their natural keys (slug, business name, event title) and
only the missing ones are created, so running it twice changes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from popmap_gql.db.models import Business, Category, Event, EventStatus, Participation, User

__all__ = ["SeedReport", "seed_demo"]

CATEGORIES = [
    ("Bakery", "bakery"),
    ("Coffee", "coffee"),
    ("Crafts", "crafts"),
    ("Food Truck", "food-truck"),
    ("Jewelry", "jewelry"),
    ("Live Music", "live-music"),
    ("Plants & Flowers", "plants-flowers"),
    ("Vintage Clothing", "vintage-clothing"),
]

# name, categories, available for hire
BUSINESSES = [
    ("Barton Springs Bakehouse", ["bakery"], True),
    ("East Cesar Coffee Co.", ["coffee"], True),
    ("Lady Bird Ceramics", ["crafts"], False),
    ("Taco Cartel ATX", ["food-truck"], True),
    ("Congress Avenue Silver", ["jewelry"], False),
    ("The Rainey Street Trio", ["live-music"], True),
    ("Zilker Succulents", ["plants-flowers"], False),
    ("South Lamar Threads", ["vintage-clothing"], False),
    ("Mueller Sourdough", ["bakery", "coffee"], True),
    ("Hyde Park Roasters", ["coffee"], False),
    ("Bluebonnet Beadwork", ["jewelry", "crafts"], True),
    ("Brisket & Bun", ["food-truck"], True),
    ("Sixth Street Strings", ["live-music"], True),
    ("Clarksville Blooms", ["plants-flowers"], True),
    ("Retro Rodeo Vintage", ["vintage-clothing"], False),
    ("Kolache Corner", ["bakery"], False),
    ("Cold Brew Cowboys", ["coffee", "food-truck"], True),
    ("Pecan Street Pottery", ["crafts"], True),
    ("Hill Country Honey", ["food-truck", "plants-flowers"], False),
    ("Austin Accordion Club", ["live-music"], True),
    ("Desert Rose Jewelry", ["jewelry"], False),
    ("Threadgill Thrift", ["vintage-clothing", "crafts"], False),
    ("Tamale Tía", ["food-truck"], True),
    ("Moonlight Tower Candles", ["crafts"], False),
    ("Lakeline Leatherworks", ["crafts", "vintage-clothing"], True),
    ("Pflugerville Pie Co.", ["bakery"], True),
    ("Saltillo Tile Studio", ["crafts"], False),
    ("Bouldin Creek Brass", ["live-music", "jewelry"], True),
    ("Windsor Park Greenhouse", ["plants-flowers"], False),
    ("Domain Donut Lab", ["bakery", "coffee"], True),
]
UNVERIFIED = {"Saltillo Tile Studio", "Windsor Park Greenhouse", "Domain Donut Lab"}

# title, venue, address, latitude, longitude
VENUES = [
    ("Republic Square", "422 Guadalupe St", 30.2677, -97.7467),
    ("Zilker Park Great Lawn", "2100 Barton Springs Rd", 30.2669, -97.7729),
    ("Mueller Lake Park", "4550 Mueller Blvd", 30.2985, -97.7051),
    ("Pease Park", "1100 Kingsbury St", 30.2841, -97.7530),
    ("Palmer Events Center", "900 Barton Springs Rd", 30.2602, -97.7520),
    ("Fair Market", "1100 E 5th St", 30.2640, -97.7302),
    ("The Domain Central Park", "11410 Century Oaks Terrace", 30.4020, -97.7252),
    ("Brush Square Park", "409 E 5th St", 30.2653, -97.7393),
    ("Springdale General", "1023 Springdale Rd", 30.2660, -97.6940),
    ("Austin Central Library Plaza", "710 W Cesar Chavez St", 30.2656, -97.7513),
]
EVENT_KINDS = [
    "Night Market",
    "Makers Fair",
    "Coffee Crawl",
    "Vintage Pop-Up",
    "Food Truck Rally",
    "Plant Swap",
    "Sunday Bazaar",
    "Live Music Pop-Up",
]

EVENT_COUNT = 40


@dataclass(frozen=True, slots=True)
class SeedReport:
    categories: int
    businesses: int
    events: int


def _event_plan(now: datetime) -> list[dict[str, object]]:
    """Forty events: most approved and upcoming, some past, pending, rejected or cancelled."""
    rng = random.Random(20261127)  # noqa: S311  # demo data, not security
    plan: list[dict[str, object]] = []
    for number in range(EVENT_COUNT):
        venue, address, lat, lon = VENUES[number % len(VENUES)]
        kind = EVENT_KINDS[number % len(EVENT_KINDS)]
        if number < 26:
            status, day_offset = EventStatus.APPROVED, rng.randint(0, 60)
        elif number < 32:
            status, day_offset = EventStatus.APPROVED, -rng.randint(3, 45)
        elif number < 36:
            status, day_offset = EventStatus.PENDING, rng.randint(7, 75)
        elif number < 38:
            status, day_offset = EventStatus.REJECTED, rng.randint(5, 40)
        else:
            status, day_offset = EventStatus.CANCELLED, rng.randint(5, 40)
        start_day = (now + timedelta(days=day_offset)).replace(minute=0, second=0, microsecond=0)
        starts_at = start_day.replace(hour=rng.choice([10, 11, 16, 17, 18]))
        plan.append(
            {
                "title": f"{kind} at {venue} #{number + 1}",
                "description": f"A {kind.lower()} with local businesses at {venue}.",
                "location_name": venue,
                "address": f"{address}, Austin, TX",
                # scatter a little around the venue so markers do not overlap
                "latitude": round(lat + rng.uniform(-0.002, 0.002), 6),
                "longitude": round(lon + rng.uniform(-0.002, 0.002), 6),
                "starts_at": starts_at,
                "ends_at": starts_at + timedelta(hours=rng.choice([3, 4, 5, 6])),
                "status": status,
                "participants": rng.sample(range(len(BUSINESSES)), k=rng.randint(2, 5)),
            }
        )
    return plan


async def seed_demo(now: datetime | None = None) -> SeedReport:
    now = now or datetime.now(UTC)
    async with in_transaction():
        demo_user, _ = await User.get_or_create(
            username="demo-staff", defaults={"email": "staff@popmap.example"}
        )
        categories: dict[str, Category] = {}
        for name, slug in CATEGORIES:
            categories[slug], _ = await Category.get_or_create(slug=slug, defaults={"name": name})

        businesses: list[Business] = []
        for name, slugs, for_hire in BUSINESSES:
            handle = "".join(ch for ch in name.lower() if ch.isalnum())
            business, created = await Business.get_or_create(
                name=name,
                defaults={
                    "description": f"{name} is a local Austin business.",
                    "contact_email": f"hello@{handle}.example",
                    "website": f"https://{handle}.example",
                    "instagram_url": f"https://instagram.com/{handle}",
                    "available_for_hire": for_hire,
                    "is_verified": name not in UNVERIFIED,
                },
            )
            if created:
                await business.categories.add(*(categories[slug] for slug in slugs))
            businesses.append(business)

        for spec in _event_plan(now):
            participants = spec.pop("participants")
            event, created = await Event.get_or_create(
                title=spec["title"], defaults={**spec, "created_by": demo_user}
            )
            if created:
                assert isinstance(participants, list)
                for index in participants:
                    await Participation.create(event=event, business=businesses[index])
    return SeedReport(
        categories=await Category.all().count(),
        businesses=await Business.all().count(),
        events=await Event.all().count(),
    )
