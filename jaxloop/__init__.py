"""jaxloop: Timeloop's accelerator model and mappers in JAX.

The public API (everything a user needs):

* :func:`load` Timeloop files into a :class:`Workload` (``.evaluate``,
  ``.mapping``, ``.mapspace``, ``.report``, ``.write``);
* :func:`evaluator`: the compiled batched evaluator (:class:`Blocked` for
  the transpose-free layout of large batches);
* :class:`Mapspace` (``workload.mapspace``): sizes, sampling, enumeration;
* :func:`search`: random, exhaustive, evolve, gradient, hybrid searches
  (the strategies live in :mod:`jaxloop.mapper`);
* :func:`map_network`: every layer of a network, programs shared by
  layer kinds (:mod:`jaxloop.network`);
* :func:`stream`: bounded-memory evaluation of any number of mappings
  (:mod:`jaxloop.streaming`; :func:`merge_results` joins parts);
* the data types :class:`Mapping`, :class:`Stats`, :class:`ArchParams`;
  errors :class:`SpecError`, :class:`UnsupportedFeatureError`,
  :class:`PrecisionError`;
* :mod:`jaxloop.model` (the traceable model, for ``jit``/``vmap``/``grad``)
  and :mod:`jaxloop.relax` (relaxed mappings for gradient search).

Importing jaxloop changes nothing in the process: no JAX configuration, no
environment variables.  Its entry points compute in 64-bit for their own
call (:mod:`jaxloop.precision`).
"""
from jaxloop.api import Workload, example_files, load
from jaxloop.errors import SpecError, UnsupportedFeatureError
from jaxloop.evaluator import Blocked, Evaluator, evaluator
from jaxloop.mapper import SearchResult, search
from jaxloop.mapspace import Mapspace
from jaxloop.network import map_network
from jaxloop.precision import PrecisionError
from jaxloop.streaming import StreamResult, merge_results, stream
from jaxloop.types import ArchParams, Mapping, Stats

__all__ = [
    "load", "Workload", "example_files", "evaluator", "Evaluator", "Blocked",
    "Mapspace", "search", "SearchResult", "stream", "StreamResult",
    "merge_results", "Mapping", "Stats", "ArchParams", "SpecError",
    "UnsupportedFeatureError", "PrecisionError", "map_network",
]
