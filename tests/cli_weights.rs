//! `--weights`, `afan convert` and `afan infer` end to end, with weights PyTorch wrote (the
//! CIFAR ResNet-20 of the golden fixture, re-saved as a DataParallel state dict), and their errors.

use afan_core::SplitModel;
use afan_data::{CifarKind, shapes10, top_k, write_cifar_dataset};
use afan_models::{ClassifierKind, StateDict};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod cli;

fn ok(args: &[&str]) -> (Value, String) {
    let (stdout, stderr) = cli::succeed(args);
    (
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stderr,
    )
}

/// A command that must fail with one `error:` line containing every one of `expect`.
fn fails(args: &[&str], expect: &[&str]) {
    let last = cli::fail(args);
    for e in expect {
        assert!(last.contains(e), "`{e}` not in: {last}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The golden fixture's `model.*` tensors as `module.*`, as `torch.save(nn.DataParallel(m)
/// .state_dict())` names them, in a safetensors file.
fn pytorch_weights(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/cifar_resnet20_afan.safetensors");
    let dict = StateDict::from_safetensors(&fixture)
        .unwrap()
        .strip_prefix("model.");
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = dict
        .keys()
        .map(|k| {
            let (v, shape) = dict.get(k).unwrap();
            (
                format!("module.{k}"),
                bytemuck::cast_slice(v).to_vec(),
                shape.to_vec(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = data
        .iter()
        .map(|(k, b, shape)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b);
            (k.clone(), view.unwrap())
        })
        .collect();
    let path = dir.join("resnet20_dp.safetensors");
    safetensors::serialize_to_file(views, None, &path).unwrap();
    path
}

#[test]
fn imported_weights_evaluate_convert_and_infer_like_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let weights = pytorch_weights(dir.path());
    let (train, test) = shapes10(64, 48, 5);
    let data = write_cifar_dataset(dir.path(), CifarKind::Cifar10, &train, &test).unwrap();
    let common = ["--dataset", "cifar10", "--data", s(&data), "--json"];

    // The state dict evaluates directly, and through a converted checkpoint identically.
    let mut args = vec!["eval", "--weights", s(&weights), "--model", "resnet20"];
    args.extend(common);
    let (direct, _) = ok(&args);
    let ckpt = dir.path().join("resnet20.ckpt");
    ok(&[
        "convert",
        "--from",
        s(&weights),
        "--model",
        "resnet20",
        "--out",
        s(&ckpt),
    ]);
    let mut args = vec!["eval", "--checkpoint", s(&ckpt)];
    args.extend(common);
    let (converted, _) = ok(&args);
    assert_eq!(direct, converted);
    assert_eq!(direct["samples"], 48);

    // infer on a PNG equals the library's forward on the same pixels.
    let c = 32 * 32;
    let pixels: Vec<u8> = test.images[..3 * c].to_vec();
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        let i = (y * 32 + x) as usize;
        image::Rgb([pixels[i], pixels[c + i], pixels[2 * c + i]])
    });
    let png = dir.path().join("sample.png");
    img.save(&png).unwrap();
    let (got, _) = ok(&[
        "infer",
        "--weights",
        s(&ckpt),
        "--image",
        s(&png),
        "--top-k",
        "3",
        "--json",
    ]);
    let device = Device::default();
    let model = ClassifierKind::CifarResNet(20)
        .build(10, &device)
        .load_pytorch(&StateDict::from_file(&weights).unwrap())
        .unwrap();
    let x: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [1, 3, 32, 32]), &device);
    let logits = model
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let want = top_k(&logits, 3);
    let top = got[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    for (t, (class, p)) in top.iter().zip(want) {
        assert_eq!(t["class"], class);
        assert_eq!(
            t["label"],
            CifarKind::Cifar10.default_class_names()[class].as_str()
        );
        assert!(
            (t["probability"].as_f64().unwrap() as f32 - p).abs() < 1e-5,
            "{t} vs {p}"
        );
    }

    // Initial weights for training: lenient by default, and said so.
    let out = dir.path().join("run");
    let (_, stderr) = ok(&[
        "train",
        "--dataset",
        "cifar10",
        "--data",
        s(&data),
        "--model",
        "resnet20",
        "--weights",
        s(&weights),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--method",
        "baseline",
        "--out",
        s(&out),
        "--quiet",
        "--set",
        "schedule.warmup=0",
        "--set",
        "val_split=0",
    ]);
    assert!(stderr.contains("initial weights from"), "{stderr}");
}

#[test]
fn weights_that_do_not_fit_or_do_not_parse_are_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let weights = pytorch_weights(dir.path());
    let w = s(&weights);
    let out = dir.path().join("x.ckpt");
    // Another architecture: the missing and the unexpected keys are named.
    fails(
        &[
            "convert",
            "--from",
            w,
            "--model",
            "resnet32",
            "--out",
            s(&out),
        ],
        &[
            "resnet20_dp.safetensors",
            "missing keys layer1.3.",
            "module.",
        ],
    );
    fails(
        &[
            "convert",
            "--from",
            w,
            "--model",
            "resnet18",
            "--out",
            s(&out),
        ],
        &["unexpected keys", "layer1.2.conv1.weight"],
    );
    assert!(!out.exists(), "a failed conversion must not leave a file");
    // A corrupt .pth, a state dict without --model, an undecodable image.
    let corrupt = dir.path().join("model.pth");
    std::fs::write(&corrupt, b"PK\x03\x04 broken zip").unwrap();
    fails(
        &[
            "infer",
            "--weights",
            s(&corrupt),
            "--model",
            "resnet20",
            "--image",
            w,
        ],
        &["model.pth", "not a PyTorch checkpoint"],
    );
    fails(&["infer", "--weights", w, "--image", w], &["pass --model"]);
    let ckpt = dir.path().join("ok.ckpt");
    let (_, _) = ok(&[
        "convert",
        "--from",
        w,
        "--model",
        "resnet20",
        "--out",
        s(&ckpt),
    ]);
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, b"not an image").unwrap();
    fails(
        &["infer", "--weights", s(&ckpt), "--image", s(&text)],
        &["notes.jpg", "cannot decode"],
    );
    fails(
        &[
            "infer",
            "--weights",
            s(&ckpt),
            "--image",
            s(&text),
            "--mean",
            "0.5,0.5,0.5",
        ],
        &["--mean/--std"],
    );
}

#[test]
fn export_writes_state_dicts_that_evaluate_like_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let weights = pytorch_weights(dir.path());
    let (train, test) = shapes10(16, 48, 5);
    let data = write_cifar_dataset(dir.path(), CifarKind::Cifar10, &train, &test).unwrap();
    let ckpt = dir.path().join("resnet20.ckpt");
    ok(&[
        "convert",
        "--from",
        s(&weights),
        "--model",
        "resnet20",
        "--out",
        s(&ckpt),
    ]);
    let common = ["--dataset", "cifar10", "--data", s(&data), "--json"];
    let mut args = vec!["eval", "--checkpoint", s(&ckpt)];
    args.extend(common);
    let (want, _) = ok(&args);
    assert_eq!(want["samples"], 48);

    // Both formats, the second one's format from the extension; each evaluates as a state dict
    // exactly like the checkpoint (same loss and accuracy: same logits).
    for (name, format) in [("w.safetensors", Some("safetensors")), ("w.pt", None)] {
        let out = dir.path().join(name);
        let mut args = vec![
            "export",
            "--checkpoint",
            s(&ckpt),
            "--out",
            s(&out),
            "--json",
        ];
        if let Some(f) = format {
            args.extend(["--format", f]);
        }
        let (summary, _) = ok(&args);
        assert_eq!(summary["model"], "resnet20", "{summary}");
        assert_eq!(summary["format"], format.unwrap_or("pth"));
        assert_eq!(summary["bytes"], std::fs::metadata(&out).unwrap().len());
        let mut args = vec!["eval", "--weights", s(&out), "--model", "resnet20"];
        args.extend(common);
        let (got, _) = ok(&args);
        assert_eq!(got, want, "{name}");
        // The release's names, with PyTorch's batch-norm counters, which the fixture lacks.
        let dict = StateDict::from_file(&out).unwrap();
        assert!(dict.keys().any(|k| k.ends_with("num_batches_tracked")));
        assert!(dict.keys().all(|k| !k.starts_with("module.")));
    }

    // An existing file is replaced only with --overwrite; the refusal leaves it as it was.
    let out = dir.path().join("w.safetensors");
    std::fs::write(&out, b"keep").unwrap();
    let args = ["export", "--checkpoint", s(&ckpt), "--out", s(&out)];
    fails(&args, &[s(&out), "already exists", "--overwrite"]);
    assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    let mut args = args.to_vec();
    args.push("--overwrite");
    ok(&args);
    assert!(StateDict::from_file(&out).unwrap().len() > 100);

    // A format that is neither is named; so is an extension that says nothing.
    let out = dir.path().join("w.onnx");
    let args = ["export", "--checkpoint", s(&ckpt), "--out", s(&out)];
    fails(
        &[&args[..], &["--format", "onnx"]].concat(),
        &["--format onnx", "safetensors or pth"],
    );
    fails(&args, &[s(&out), "--format safetensors|pth"]);
    fails(
        &[
            "export",
            "--checkpoint",
            "/nonexistent/best.ckpt",
            "--out",
            s(&out),
            "--format",
            "pth",
        ],
        &["/nonexistent/best.ckpt"],
    );
    assert!(!out.exists());
}
