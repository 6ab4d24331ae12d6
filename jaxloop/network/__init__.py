"""Whole networks: ordered layers mapped on one architecture, with the
compiled programs shared by the layers of a kind.

* :func:`load_layers`: problem files, folders, globs, network YAML files
  and ONNX models -> ``[Layer]`` (:mod:`jaxloop.network.layers`);
* :func:`map_network`: every distinct layer's best mapping, network
  totals, compile counts -> :class:`NetworkResult`
  (:mod:`jaxloop.network.mapper`);
* :func:`write_network`: ``network.csv``, ``summary.json``, each layer's
  Timeloop outputs and the energy breakdown plot
  (:mod:`jaxloop.network.outputs`);
* :mod:`jaxloop.network.kinds`: which problems share a compiled program.
"""
from jaxloop.network.layers import Layer, load_layers
from jaxloop.network.mapper import LayerResult, NetworkResult, map_network

__all__ = ["Layer", "load_layers", "map_network", "NetworkResult",
           "LayerResult"]
