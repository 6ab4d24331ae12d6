"""Fitted constants of the SRAM model (``primitives.sram``).

Calibrated against CACTI 7.0 (N. Muralimanohar, R. Balasubramonian,
N. Jouppi, HP Labs; github.com/HewlettPackard/cacti), the SRAM model
Accelergy uses, run as a black box with the settings of Accelergy's CACTI
plug-in (one read/write port, one bank, ITRS low-standby-power cells and
periphery, leakage-weighted organisation search) over widths 32..1024 bits
and depths 64..65536 rows (up to 16 Mbit) at 22, 32, 45, 65 and 90 nm.  The
sweep is ``experiments/results/cacti_sram_sweep.csv``; the fit (and how the
sweep was produced) is ``experiments/calibrate_sram.py``.

* ``READ_PJ``, ``WRITE_PJ``, ``LEAK_MW``, ``AREA_UM2``: at 45 nm,
  ``log(y) = c . (1, x, z, x^2, xz, z^2, x^3, x^2 z, x z^2, z^3)`` with
  ``x = log2(width)``, ``z = log2(depth)``, least squares constrained to be
  non-decreasing in width and depth over the fitted region.  CACTI changes
  array organisation from one size to the next, so its energies jump (its
  read energy even falls with size in places); the smooth surface follows
  them with an rms error of 12 % (read), 7 % (write), 4 % (leakage), 7 %
  (area), worst cases 0.77-1.47x (read), 0.77-1.14x (write).
* ``SRAM_NODES``: per technology node, the median ratio to 45 nm over the
  sweep of dynamic energy (geometric mean of read and write), standby
  leakage and area (CACTI's ITRS technology files).
"""
from __future__ import annotations

# Cubic fits at 45 nm (203 sizes).
READ_PJ = (-4.45015, 0.461589, 0.0349099, 0.0597664, -0.0758976, 0.0630681,
           0.00126392, -0.00365322, 0.00546338, -0.00299106)
WRITE_PJ = (-2.45726, -0.556532, 0.346803, 0.130338, 0.0519321, -0.0217475,
            -0.0036991, -0.00161475, -0.00111373, 0.000860903)
LEAK_MW = (-17.9695, 0.212071, 0.821285, 0.0671661, -0.0192466, -0.0133277,
           -0.00312311, 0.00060463, 0.000648118, 0.000329165)
AREA_UM2 = (-0.301244, 1.09373, 0.399, 0.0304859, -0.133738, 0.0617151,
            0.000594991, -0.00185885, 0.00686135, -0.00294356)

# The fitted region (log2 of bits and rows) and its largest capacity.
LOG2_WIDTH = (5.0, 10.0)
LOG2_DEPTH = (6.0, 16.0)
LOG2_BITS_MAX = 24.0

# (node nm, dynamic energy, leakage, area) relative to 45 nm.
SRAM_NODES = ((22.0, 0.239, 5.851, 0.2417), (32.0, 0.5522, 1.715, 0.5064),
              (45.0, 1.0, 1.0, 1.0), (65.0, 1.859, 6.649, 2.087),
              (90.0, 3.387, 3.432, 3.98))
