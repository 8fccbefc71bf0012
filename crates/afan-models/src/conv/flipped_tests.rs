//! The flipped-weight scope ([`super::flipped`]): the same bits inside and outside it over
//! several backward passes, its cache dropped when it ends (also on panic and when nested), a
//! weight changed between scopes or in place inside one, and threads with scopes of their own.

use super::*;
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, TensorData};

/// `[N, C, H, W]` input and `[K, C, 3, 3]` weight with `K < C`: the input gradient goes by the
/// flipped weight's convolution (`InputRoute::Conv`).
const X: [usize; 4] = [2, 6, 7, 7];
const W: [usize; 4] = [4, 6, 3, 3];

fn bits(t: Tensor<4>) -> Vec<u32> {
    let v = t.into_data().try_to_vec::<f32>().expect("f32");
    v.into_iter().map(f32::to_bits).collect()
}

/// Output, input gradient and weight gradient of `sum(y * r)`, as bits.
type Pass = [Vec<u32>; 3];

/// Values in -1..1 from a xorshift generator of this test's own, seeded by `seed`: the device's
/// generator is shared by every thread of the process (seeding it from two threads at once, as
/// `threads_have_scopes_of_their_own` did, made the threads' data depend on the interleaving).
fn data(shape: [usize; 4], seed: u64) -> TensorData {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    TensorData::new(values, shape)
}

/// One forward and backward pass of the padded 3x3 convolution on the autodiff device.
fn pass(x: &Tensor<4>, w: &Tensor<4>, r: &Tensor<4>) -> Pass {
    let y = fast_conv2d(x.clone(), w.clone(), [1, 1], [1, 1], [1, 1], 1);
    let grads = (y.clone() * r.clone()).sum().backward();
    [
        bits(y),
        bits(x.grad(&grads).expect("dx")),
        bits(w.grad(&grads).expect("dw")),
    ]
}

struct Case {
    x: Tensor<4>,
    w: Tensor<4>,
    r: Tensor<4>,
}

fn case(seed: u64) -> Case {
    let dev = Device::flex().autodiff();
    let t = |d: TensorData| Tensor::<4>::from_data(d, &dev).require_grad();
    Case {
        x: t(data(X, seed)),
        w: t(data(W, seed + 1)),
        r: Tensor::from_data(data([X[0], W[0], X[2], X[3]], seed + 2), &dev),
    }
}

#[test]
fn passes_in_a_scope_give_the_bits_of_passes_outside() {
    let c = case(1);
    let outside = pass(&c.x, &c.w, &c.r);
    let before = FlippedWeights::counts();
    with_flipped_weights(|| {
        for i in 0..3 {
            assert_eq!(pass(&c.x, &c.w, &c.r), outside, "pass {i}");
        }
        let now = FlippedWeights::counts();
        assert_eq!(now.entries, 1);
        assert_eq!(now.bytes, W.iter().product::<usize>() * 4);
        assert_eq!((now.misses - before.misses, now.hits - before.hits), (1, 2));
    });
    assert_eq!(
        FlippedWeights::counts().entries,
        0,
        "dropped with the scope"
    );
}

#[test]
fn outside_a_scope_nothing_is_cached() {
    let c = case(2);
    let before = FlippedWeights::counts();
    pass(&c.x, &c.w, &c.r);
    pass(&c.x, &c.w, &c.r);
    assert_eq!(FlippedWeights::counts(), before);
}

#[test]
fn nested_scopes_keep_the_cache_until_the_outermost_ends() {
    let c = case(3);
    with_flipped_weights(|| {
        with_flipped_weights(|| pass(&c.x, &c.w, &c.r));
        assert_eq!(
            FlippedWeights::counts().entries,
            1,
            "the outer scope holds it"
        );
        let hits = FlippedWeights::counts().hits;
        pass(&c.x, &c.w, &c.r);
        assert_eq!(FlippedWeights::counts().hits, hits + 1);
    });
    assert_eq!(FlippedWeights::counts().entries, 0);
}

#[test]
fn a_panic_inside_a_scope_drops_its_cache() {
    let c = case(4);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        with_flipped_weights(|| {
            pass(&c.x, &c.w, &c.r);
            assert_eq!(FlippedWeights::counts().entries, 1);
            panic!("inside the scope");
        })
    }));
    assert!(caught.is_err());
    assert_eq!(FlippedWeights::counts().entries, 0);
    // And the scope was left: a pass now caches nothing.
    pass(&c.x, &c.w, &c.r);
    assert_eq!(FlippedWeights::counts().entries, 0);
}

#[test]
fn a_weight_changed_between_scopes_gives_its_own_gradient() {
    let c = case(5);
    let w2 = Tensor::<4>::from_data(data(W, 50), &c.w.device()).require_grad();
    let expected = pass(&c.x, &w2, &c.r);
    with_flipped_weights(|| pass(&c.x, &c.w, &c.r));
    let got = with_flipped_weights(|| pass(&c.x, &w2, &c.r));
    assert_eq!(got, expected);
}

/// On flex directly: a weight written in place inside a scope (`storage_mut`, as SGD does) is
/// copied first, because the cache shares its buffer; the next pass misses and sees the new values.
#[test]
fn a_weight_written_in_place_inside_a_scope_is_a_new_buffer() {
    let flex = |d: TensorData| FlexTensor::from_data(d);
    let (x, mut w) = (flex(data(X, 6)), flex(data(W, 7)));
    let dy = flex(data([X[0], W[0], X[2], X[3]], 8));
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let dx = |w: &FlexTensor| {
        let (dx, _) = <Flex as FastConvBackward>::afan_conv2d_backward(
            x.clone(),
            w.clone(),
            dy.clone(),
            options.clone(),
            [true, false],
        );
        dx.expect("dx").storage::<f32>().to_vec()
    };
    let _scope = FlippedWeights::enter();
    dx(&w);
    let address = w.bytes().as_ptr();
    w.storage_mut::<f32>()[0] += 1.0;
    assert_ne!(w.bytes().as_ptr(), address, "copied, not written in place");
    let inside = dx(&w);
    assert_eq!(FlippedWeights::counts().entries, 2);
    drop(_scope);
    assert!(
        w.is_unique(),
        "the cache's clones are dropped with the scope"
    );
    assert_eq!(inside, dx(&w));
}

#[test]
fn threads_have_scopes_of_their_own() {
    let expected: Vec<Pass> = (0..2)
        .map(|i| {
            let c = case(10 + 3 * i);
            pass(&c.x, &c.w, &c.r)
        })
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|i| {
                s.spawn(move || {
                    let c = case(10 + 3 * i);
                    with_flipped_weights(|| {
                        let passes = [pass(&c.x, &c.w, &c.r), pass(&c.x, &c.w, &c.r)];
                        let n = FlippedWeights::counts();
                        assert_eq!((n.entries, n.misses, n.hits), (1, 1, 1), "thread {i}");
                        passes
                    })
                })
            })
            .collect();
        // This thread opened no scope: nothing cached here meanwhile.
        assert_eq!(FlippedWeights::counts().entries, 0);
        for (i, h) in handles.into_iter().enumerate() {
            for p in h.join().expect("no panic") {
                assert_eq!(p, expected[i], "thread {i}");
            }
        }
    });
}
