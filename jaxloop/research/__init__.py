"""Tools for ML-driven mapper research: fixed-width features of mappings,
layers and architectures (:mod:`jaxloop.research.features`), datasets of
exact statistics (:mod:`jaxloop.research.dataset`) and flax surrogates
(:mod:`jaxloop.research.surrogate`).  Submodules are imported on use."""
