"""The `afan infer` check against torchvision on real photographs.

Writes, into the folder given (default /tmp/afan-top5): resnet50.pth (torchvision's ResNet-50 with
hash_weights values: no pretrained weights can be fetched offline), the
photographs scikit-image ships (astronaut, chelsea, coffee, rocket, ...) as JPEG and PNG files, and
torchvision.json with PyTorch's top-5 for each file under the standard evaluation transform
(Resize 256, CenterCrop 224, ToTensor, Normalize with ImageNet statistics). Then compare:

    .venv/bin/python xtask/reference/torchvision_top5.py /tmp/afan-top5 [resnet50|efficientnet_b0]
    afan infer --model resnet50 --weights /tmp/afan-top5/resnet50.pth \
        --image /tmp/afan-top5/*.jpg /tmp/afan-top5/*.png --json > /tmp/afan-top5/afan.json
    python3 xtask/reference/compare_top5.py /tmp/afan-top5

With real pretrained weights, replace resnet50.pth by the downloaded file and pass --pretrained.
Hash weights give flat probabilities (top-1 p ~ 0.003), which hide input differences;
`--fc-scale=S` multiplies the classifier's weights and bias by S (saved so, for afan too), which
makes the predictions as peaked as a trained model's and the comparison sensitive.
"""
import json
import os
import sys
import torch
import torchvision
from torchvision import transforms
from PIL import Image
import skimage.data

args = [a for a in sys.argv[1:] if not a.startswith("--")]
out = args[0] if args else "/tmp/afan-top5"
arch = args[1] if len(args) > 1 else "resnet50"
pretrained = "--pretrained" in sys.argv
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
model = getattr(torchvision.models, arch)(weights=None).eval()
if pretrained:
    model.load_state_dict(torch.load(os.path.join(out, f"{arch}.pth")))
else:
    # torchvision's own init gives EfficientNet near-zero logits (every class at p = 0.001), so
    # the weights come from hash_weights, which make each image's prediction its own.
    from hash_weights import value
    sd = model.state_dict()
    for k, t in sd.items():
        if not k.endswith("num_batches_tracked"):
            sd[k] = torch.from_numpy(value(k, tuple(t.shape)))
    scale = float(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--fc-scale=")), 1))
    for k in sd:
        if k.split(".")[0] in ("fc", "classifier") and k.split(".")[-1] in ("weight", "bias"):
            sd[k] = sd[k] * scale
    model.load_state_dict(sd)
    torch.save(model.state_dict(), os.path.join(out, f"{arch}.pth"))

files = []
for name in ["astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry"]:
    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    for ext in ["jpg", "png"] if name in ("astronaut", "chelsea") else ["jpg"]:
        path = os.path.join(out, f"{name}.{ext}")
        img.save(path, quality=95) if ext == "jpg" else img.save(path)
        files.append(path)

# torchvision's weights use these sizes; EfficientNet-B0's transform is bicubic (afan: bilinear).
tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                         transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
results = []
with torch.no_grad():
    for path in files:
        x = tf(Image.open(path).convert("RGB")).unsqueeze(0)
        p = torch.softmax(model(x), 1)[0]
        top = torch.topk(p, 5)
        results.append({"image": path, "top": [{"class": int(i), "probability": float(v)}
                                               for v, i in zip(top.values, top.indices)]})
json.dump(results, open(os.path.join(out, f"torchvision.json"), "w"), indent=1)
print("wrote", len(files), f"images, {arch}.pth and torchvision.json to", out)
