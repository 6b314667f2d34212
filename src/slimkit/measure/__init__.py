"""One measurement path for every target: metric through the target, latency, size, memory, MACs."""

from slimkit.measure.latency import Latency, time_callable
from slimkit.measure.measure import Measurement, measure_deployed

__all__ = ["Latency", "Measurement", "measure_deployed", "time_callable"]
