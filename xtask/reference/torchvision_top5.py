"""The `afan infer` check against torchvision on real photographs.

Writes, into the folder given (default /tmp/afan-top5): resnet50.pth (torchvision's ResNet-50 with
its own random initialisation, seed 0: no pretrained weights can be fetched offline), the
photographs scikit-image ships (astronaut, chelsea, coffee, rocket, ...) as JPEG and PNG files, and
torchvision.json with PyTorch's top-5 for each file under the standard evaluation transform
(Resize 256, CenterCrop 224, ToTensor, Normalize with ImageNet statistics). Then compare:

    .venv/bin/python xtask/reference/torchvision_top5.py /tmp/afan-top5
    afan infer --model resnet50 --weights /tmp/afan-top5/resnet50.pth \
        --image /tmp/afan-top5/*.jpg /tmp/afan-top5/*.png --json > /tmp/afan-top5/afan.json
    python3 xtask/reference/compare_top5.py /tmp/afan-top5

With real pretrained weights, replace resnet50.pth by the downloaded file and pass --pretrained.
"""
import json
import os
import sys
import torch
import torchvision
from torchvision import transforms
from PIL import Image
import skimage.data

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/afan-top5"
pretrained = "--pretrained" in sys.argv
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
model = torchvision.models.resnet50(weights=None).eval()
if pretrained:
    model.load_state_dict(torch.load(os.path.join(out, "resnet50.pth")))
else:
    torch.save(model.state_dict(), os.path.join(out, "resnet50.pth"))

files = []
for name in ["astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry"]:
    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    for ext in ["jpg", "png"] if name in ("astronaut", "chelsea") else ["jpg"]:
        path = os.path.join(out, f"{name}.{ext}")
        img.save(path, quality=95) if ext == "jpg" else img.save(path)
        files.append(path)

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
json.dump(results, open(os.path.join(out, "torchvision.json"), "w"), indent=1)
print("wrote", len(files), "images, resnet50.pth and torchvision.json to", out)
