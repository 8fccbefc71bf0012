"""State-dict keys and shapes of torchvision's MobileNetV2 (1000 classes), for afan-models'
key-mapping test. Writes crates/afan-models/tests/fixtures/mobilenet_v2_keys.txt, one
`key dim0xdim1...` per line in state-dict order. Run from the repository root with torchvision:
    python3 xtask/reference/mobilenet_v2_keys.py
"""
import torchvision

model = torchvision.models.mobilenet_v2(num_classes=1000)
lines = []
for k, v in model.state_dict().items():
    if k.endswith("num_batches_tracked"):
        continue
    lines.append(f"{k} {'x'.join(str(d) for d in v.shape)}")
params = sum(p.numel() for p in model.parameters())
with open("crates/afan-models/tests/fixtures/mobilenet_v2_keys.txt", "w") as f:
    f.write(f"# torchvision {torchvision.__version__} mobilenet_v2: {params} parameters\n")
    f.write("\n".join(lines) + "\n")
print(params, len(lines))
