"""The conformance kit: polyconv's property suite, run against any registered backend.

    POLYCONV_CONFORMANCE_BACKEND=name pytest --pyargs polyconv.conformance

checks that backend ``name`` computes the specification: forward results and gradients equal the
float64 reference within the error bound of :mod:`polyconv.testing` on random problems (every
spatial rank, padding form and mode, stride, dilation, groups, batched or not), in every dtype it
supports; that ``convolve`` flips the kernel; that dtypes, devices and the array conversions are
kept; and that arrays of its framework are dispatched to it. ``POLYCONV_CONFORMANCE_MAX_EXAMPLES``
sets the number of random problems per property (default 25). It needs pytest and Hypothesis.
See ``docs/backends.md``.
"""

BACKEND_VARIABLE = "POLYCONV_CONFORMANCE_BACKEND"
MAX_EXAMPLES_VARIABLE = "POLYCONV_CONFORMANCE_MAX_EXAMPLES"
DEFAULT_MAX_EXAMPLES = 25
