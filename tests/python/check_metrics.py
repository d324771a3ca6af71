"""Parses a Prometheus text exposition with the reference client library
(prometheus_client) and prints {metric: {"type": ..., "samples": [[name, labels, value]]}}.
A malformed exposition makes the parser raise, which fails the test."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

out = {}
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    out[family.name] = {
        "type": family.type,
        "help": family.documentation,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
print(json.dumps(out))
