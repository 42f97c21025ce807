//! Exported generators, run by tract through `kiln-infer`, against plain-Rust layers written from
//! PyTorch's definitions (nn.Linear, nn.BatchNorm in eval mode, nn.ConvTranspose2d, activations).

use kiln_export::layers::{Activation, BatchNorm, ConvTranspose2d, Linear};
use kiln_export::{generator_model, write_model, GenLayer};
use kiln_infer::contract::GeneratorMeta;
use kiln_infer::GeneratorModel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// One sample through the stack; `shape` is the per-sample shape as it goes.
fn reference(stack: &[GenLayer], z: &[f32]) -> Vec<f32> {
    let mut x = z.to_vec();
    let mut shape = vec![z.len()];
    for layer in stack {
        match layer {
            GenLayer::Linear(l) => {
                x = (0..l.outputs)
                    .map(|o| {
                        l.bias[o] + (0..l.inputs).map(|i| l.weight[o * l.inputs + i] * x[i]).sum::<f32>()
                    })
                    .collect();
                shape = vec![l.outputs];
            }
            GenLayer::BatchNorm(b) => {
                let per = x.len() / b.channels;
                for (i, v) in x.iter_mut().enumerate() {
                    let c = i / per;
                    *v =
                        (*v - b.running_mean[c]) / (b.running_var[c] + b.eps).sqrt() * b.gamma[c] + b.beta[c];
                }
            }
            GenLayer::Activation(a) => x.iter_mut().for_each(|v| {
                *v = match a {
                    Activation::Relu => v.max(0.0),
                    Activation::LeakyRelu { alpha } => {
                        if *v >= 0.0 {
                            *v
                        } else {
                            *v * alpha
                        }
                    }
                    Activation::Tanh => v.tanh(),
                    Activation::Sigmoid => 1.0 / (1.0 + (-*v).exp()),
                }
            }),
            GenLayer::Reshape(to) => shape = to.clone(),
            GenLayer::ConvTranspose(c) => {
                let (h, w) = (shape[1], shape[2]);
                let (h2, w2) = (c.output_size(h).unwrap(), c.output_size(w).unwrap());
                let k = c.kernel;
                let mut y = vec![0f32; c.out_channels * h2 * w2];
                for co in 0..c.out_channels {
                    let b = c.bias.as_ref().map_or(0.0, |b| b[co]);
                    y[co * h2 * w2..(co + 1) * h2 * w2].iter_mut().for_each(|v| *v = b);
                }
                // y[co, iy·s − p + ky, ix·s − p + kx] += x[ci, iy, ix] · w[ci, co, ky, kx]
                for ci in 0..c.in_channels {
                    for iy in 0..h {
                        for ix in 0..w {
                            let xv = x[(ci * h + iy) * w + ix];
                            for co in 0..c.out_channels {
                                for ky in 0..k {
                                    for kx in 0..k {
                                        let oy = (iy * c.stride + ky) as isize - c.padding as isize;
                                        let ox = (ix * c.stride + kx) as isize - c.padding as isize;
                                        if oy < 0 || ox < 0 || oy >= h2 as isize || ox >= w2 as isize {
                                            continue;
                                        }
                                        let wv = c.weight[((ci * c.out_channels + co) * k + ky) * k + kx];
                                        y[(co * h2 + oy as usize) * w2 + ox as usize] += xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
                x = y;
                shape = vec![c.out_channels, h2, w2];
            }
        }
    }
    x
}

fn bn(rng: &mut ChaCha8Rng, channels: usize) -> BatchNorm {
    BatchNorm {
        channels,
        gamma: rand_vec(rng, channels, 0.5, 1.5),
        beta: rand_vec(rng, channels, -0.5, 0.5),
        running_mean: rand_vec(rng, channels, -0.3, 0.3),
        running_var: rand_vec(rng, channels, 0.5, 2.0),
        eps: 1e-5,
    }
}

fn check(stack: Vec<GenLayer>, latent: usize, output_shape: Vec<usize>, rng: &mut ChaCha8Rng) {
    let meta = GeneratorMeta {
        latent,
        output_shape,
        value_range: [-1.0, 1.0],
        dataset: "test".into(),
        train_config: serde_json::Value::Null,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.onnx");
    write_model(&generator_model(&stack, &meta).unwrap(), &path).unwrap();
    let g = GeneratorModel::load(&path).unwrap();
    assert_eq!(g.meta(), &meta);
    for batch in [1, 16] {
        let z = rand_vec(rng, batch * latent, -2.0, 2.0);
        let got: Vec<f32> = g
            .generate(kiln_infer::ndarray::ArrayView2::from_shape((batch, latent), &z).unwrap())
            .unwrap()
            .iter()
            .copied()
            .collect();
        let want: Vec<f32> = z.chunks(latent).flat_map(|z| reference(&stack, z)).collect();
        assert_eq!(got.len(), want.len());
        let d = kiln_infer::numeric::max_abs_diff(&got, &want);
        assert!(d < 1e-4, "batch {batch}: differs by {d}");
    }
}

#[test]
fn mlp_generator_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let lin = |rng: &mut ChaCha8Rng, i: usize, o: usize| {
        GenLayer::Linear(Linear {
            inputs: i,
            outputs: o,
            weight: rand_vec(rng, i * o, -0.5, 0.5),
            bias: rand_vec(rng, o, -0.1, 0.1),
        })
    };
    let stack = vec![
        lin(&mut rng, 4, 32),
        GenLayer::Activation(Activation::Relu),
        lin(&mut rng, 32, 32),
        GenLayer::Activation(Activation::LeakyRelu { alpha: 0.2 }),
        lin(&mut rng, 32, 2),
    ];
    check(stack, 4, vec![2], &mut rng);
}

#[test]
fn dcgan_style_generator_matches_reference() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let ct = |rng: &mut ChaCha8Rng, i: usize, o: usize, bias: bool| ConvTranspose2d {
        in_channels: i,
        out_channels: o,
        kernel: 4,
        stride: 2,
        padding: 1,
        weight: rand_vec(rng, i * o * 16, -0.3, 0.3),
        bias: bias.then(|| rand_vec(rng, o, -0.1, 0.1)),
    };
    let stack = vec![
        GenLayer::Linear(Linear {
            inputs: 8,
            outputs: 6 * 7 * 7,
            weight: rand_vec(&mut rng, 8 * 294, -0.3, 0.3),
            bias: vec![0.0; 294],
        }),
        GenLayer::BatchNorm(bn(&mut rng, 294)),
        GenLayer::Activation(Activation::Relu),
        GenLayer::Reshape(vec![6, 7, 7]),
        GenLayer::ConvTranspose(ct(&mut rng, 6, 4, false)), // → [4, 14, 14]
        GenLayer::BatchNorm(bn(&mut rng, 4)),
        GenLayer::Activation(Activation::Relu),
        GenLayer::ConvTranspose(ct(&mut rng, 4, 1, true)), // → [1, 28, 28]
        GenLayer::Activation(Activation::Tanh),
    ];
    check(stack, 8, vec![1, 28, 28], &mut rng);
}

#[test]
fn a_stack_that_does_not_fit_is_refused() {
    let meta = GeneratorMeta {
        latent: 3,
        output_shape: vec![2],
        value_range: [-1.0, 1.0],
        dataset: "test".into(),
        train_config: serde_json::Value::Null,
    };
    let wrong_width =
        vec![GenLayer::Linear(Linear { inputs: 4, outputs: 2, weight: vec![0.0; 8], bias: vec![0.0; 2] })];
    let err = generator_model(&wrong_width, &meta).unwrap_err().to_string();
    assert!(err.contains("Linear takes [4], gets [3]"), "{err}");
    let wrong_output =
        vec![GenLayer::Linear(Linear { inputs: 3, outputs: 5, weight: vec![0.0; 15], bias: vec![0.0; 5] })];
    assert!(generator_model(&wrong_output, &meta).is_err());
}
