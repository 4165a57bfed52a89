#!/usr/bin/env python3
"""st_check.py DIR -- reads an exported Hugging Face directory with nothing but the safetensors layout
(u64 header length, JSON header, data) and prints one JSON object: the tensor count, the dtypes, whether
every tensor's offsets tile the data section exactly and match its shape, the fraction of zeros over the
linear layers' weights, and whether the sub-blocks config.json lists as dropped hold only zeros.
An independent reader for the export tests: it shares no code with evobudget."""
import json, struct, sys

d = sys.argv[1]
cfg = json.load(open(d + "/config.json"))
raw = open(d + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
meta = hdr.pop("__metadata__", {})
data = raw[8 + n:]
size = {"F32": 4, "F16": 2, "BF16": 2}
fmt = {"F32": "f", "F16": "e"}
spans, ok = [], True
for name, t in hdr.items():
    b, e = t["data_offsets"]
    count = 1
    for s in t["shape"]:
        count *= s
    ok &= e - b == count * size[t["dtype"]]
    spans.append((b, e))
spans.sort()
ok &= spans[0][0] == 0 and spans[-1][1] == len(data) and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))

def values(name):
    t = hdr[name]
    b, e = t["data_offsets"]
    if t["dtype"] == "BF16":
        return [struct.unpack("<f", b"\0\0" + data[i:i + 2])[0] for i in range(b, e, 2)]
    return list(struct.unpack("<%d%s" % ((e - b) // size[t["dtype"]], fmt[t["dtype"]]), data[b:e]))

linear = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
total = zeros = 0
for l in range(cfg["num_hidden_layers"]):
    for k in linear:
        v = values("model.layers.%d.%s.weight" % (l, k))
        total += len(v)
        zeros += sum(1 for x in v if x == 0.0)
dropped_zero = True
for x in cfg.get("evobudget_dropped", []):
    for k in (linear[:4] if x["sub"] == "attn" else linear[4:]):
        dropped_zero &= all(v == 0.0 for v in values("model.layers.%d.%s.weight" % (x["block"], k)))
print(json.dumps({"tensors": len(hdr), "dtypes": sorted({t["dtype"] for t in hdr.values()}), "layout_ok": bool(ok),
                  "format": meta.get("format"), "linear_sparsity": zeros / total, "dropped": len(cfg.get("evobudget_dropped", [])),
                  "dropped_zero": bool(dropped_zero)}))
