//! Time per node of a model's optimised plan, the slowest first: where a graph spends its time.
//!
//!     cargo run --release -p kiln-infer --example profile -- MODEL.onnx [BATCH] [ITERS] [SEQ] [--raw] [--many-rows]
//!
//! The graph is the one kiln runs: the file with kiln's load-time rewrites
//! (`kiln_infer::rewrite_for_tract`); `--raw` profiles tract's own reading of the file instead,
//! `--many-rows` the form a generator's calls of many rows run (`kiln_infer::rewrite_for_many_rows`).
//! Feeds zeros of the model's input shapes (the batch axis set to BATCH, 1 by default; the
//! second axis of an int64 input, a window of token ids, set to SEQ, 1 by default) and sums
//! each node's time over ITERS runs (100 by default) of a plan made for those shapes.

use std::collections::HashMap;
use std::time::Instant;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{eval, SimpleState};
use tract_onnx::tract_hir::infer::Factoid;

fn main() -> TractResult<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let raw = args.iter().any(|a| a == "--raw");
    let many_rows = args.iter().any(|a| a == "--many-rows");
    args.retain(|a| a != "--raw" && a != "--many-rows");
    let path = args.get(1).ok_or_else(|| anyhow::anyhow!("usage: profile MODEL.onnx [BATCH] [ITERS]"))?;
    let batch: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let iters: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let seq: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1);
    // As `kiln` does: freed buffers are reused, not mapped afresh (page faults) at every run.
    kiln_infer::heap::reuse_freed_memory();
    let t0 = Instant::now();
    let onnx = tract_onnx::onnx();
    let mut proto = onnx.proto_model_for_path(path)?;
    let rewritten = if raw { 0 } else { kiln_infer::rewrite_for_tract(&mut proto) };
    if many_rows {
        proto = kiln_infer::rewrite_for_many_rows(&proto)
            .ok_or_else(|| anyhow::anyhow!("{path}: no chain of dense layers to run feature-major"))?;
    }
    let mut model = onnx.model_for_proto_model(&proto)?;
    let parsed = t0.elapsed();
    let mut inputs = TVec::new();
    for i in 0..model.inputs.len() {
        let fact = model.input_fact(i)?.clone();
        let dt = fact.datum_type().unwrap_or(f32::datum_type());
        let dims: Vec<usize> = fact
            .shape
            .dims()
            .enumerate()
            .map(|(axis, d)| {
                let free = if axis == 1 && dt == i64::datum_type() { seq } else { batch };
                d.concretize().and_then(|d| d.to_i64().ok().map(|v| v as usize)).unwrap_or(free)
            })
            .collect();
        model.set_input_fact(i, InferenceFact::dt_shape(dt, &dims))?;
        inputs.push(Tensor::zero_dt(dt, &dims)?.into_tvalue());
    }
    let t1 = Instant::now();
    let typed = model.into_typed()?;
    let t2 = Instant::now();
    let plan = typed.into_optimized()?.into_runnable()?;
    println!(
        "load: read and parse {:.2} ms, typed {:.2} ms, optimised {:.2} ms",
        parsed.as_secs_f64() * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
        t2.elapsed().as_secs_f64() * 1e3
    );
    let mut state = SimpleState::new(&plan)?;
    let mut times: HashMap<usize, f64> = HashMap::new();
    let start = Instant::now();
    for _ in 0..iters {
        state.run_plan_with_eval(inputs.clone(), |ctx, op_state, node, input| {
            let t = Instant::now();
            let out = eval(ctx, op_state, node, input);
            *times.entry(node.id).or_default() += t.elapsed().as_secs_f64();
            out
        })?;
    }
    let total = start.elapsed().as_secs_f64();
    let mut rows: Vec<(usize, f64)> = times.into_iter().collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let form = if raw { "as written".to_string() } else { format!("kiln's rewrites: {rewritten} node(s)") };
    println!("{path} ({form}), batch {batch}: {:.3} ms per run", total * 1e3 / iters as f64);
    for (id, t) in rows {
        let node = plan.model().node(id);
        // The op's own description: for a matmul, the kernel tract chose.
        let info = node.op().info().unwrap_or_default().join("; ");
        println!(
            "{:>9.3} ms {:>5.1}%  {} {}  {}",
            t * 1e3 / iters as f64,
            100.0 * t / total,
            node.op().name(),
            node.name,
            info.chars().take(160).collect::<String>()
        );
    }
    Ok(())
}
