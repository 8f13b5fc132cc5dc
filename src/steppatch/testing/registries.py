"""Seeded random registries: larger universes than brute force can check, for benchmarks and
determinism tests. Pure Python (``random.Random``); the same seed gives the same registry on
every platform and under every ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import random

from .checks import UniverseData

__all__ = ["random_registry"]


def random_registry(
    seed: int,
    *,
    components: int = 30,
    max_versions: int = 6,
    max_dependencies: int = 4,
    requests: int = 3,
) -> tuple[UniverseData, list[str]]:
    """A random universe and a request on it. Roughly half of the seeds are unsolvable.

    Components are ``c0``, ``c1``...; each depends only on higher-numbered ones (and rarely on a
    lower one, making cycles), with lower bounds, upper bounds, two-sided ranges or pins over
    versions that exist or not. O(components x versions x dependencies).
    """
    rng = random.Random(seed)
    names = [f"c{i}" for i in range(components)]
    universe: dict[str, dict[str, dict[str, str]]] = {}
    published: dict[str, list[str]] = {}
    for name in names:
        count = rng.randint(1, max_versions)
        majors = sorted(rng.sample(range(1, max_versions + 3), count))
        published[name] = [f"{m}.{rng.randint(0, 2)}" for m in majors]
    for i, name in enumerate(names):
        universe[name] = {}
        for version in published[name]:
            deps: dict[str, str] = {}
            for _ in range(rng.randint(0, max_dependencies)):
                if i + 1 < components and rng.random() < 0.9:
                    target = names[rng.randint(i + 1, components - 1)]
                else:
                    target = names[rng.randint(0, components - 1)]
                if target == name:
                    continue
                deps[target] = _range(rng, published[target])
            universe[name][version] = deps
    request = []
    for name in rng.sample(names[: max(1, components // 3)], min(requests, components)):
        request.append(name + (_range(rng, published[name]) if rng.random() < 0.5 else ""))
    return universe, request


def _range(rng: random.Random, versions: list[str]) -> str:
    major = int(versions[rng.randrange(len(versions))].split(".")[0])
    kind = rng.random()
    if kind < 0.35:
        return f">={major}"
    if kind < 0.6:
        return f"<{major + 1}"
    if kind < 0.85:
        return f">={major},<{major + rng.randint(1, 3)}"
    return f"=={major}.*"
