"""Mapspace searches (random, exhaustive, evolutionary) over the model."""
from jaxloop.search.driver import SearchResult
from jaxloop.search.objective import parse_objective
from jaxloop.search.searches import (evolve_search, exhaustive_search,
                                     random_search)

SEARCHES = {"random": random_search, "exhaustive": exhaustive_search,
            "evolve": evolve_search}

__all__ = ["SearchResult", "parse_objective", "random_search",
           "exhaustive_search", "evolve_search", "SEARCHES"]
