//! Prompt-processing and generation speed of the embedded model, and the
//! process's peak memory, for BENCHMARKS.md ("Local model"). Run by
//! `scripts/bench-local.sh` beside llama.cpp's own Python binding on the
//! same GGUF, prompt and settings.
//!
//! cargo run --release -p rein-local --example bench -- [MODEL] [--threads N]
//!     [--prompt-tokens N] [--gen-tokens N] [--reps N] [--tools]

use rein_local::{LocalConfig, LocalModel, ToolChoice};
use rein_types::{Message, ModelRequest, RiskTier, ToolName, ToolSpec};
use std::time::Duration;

struct Args {
    model: String,
    threads: Option<u32>,
    prompt_tokens: usize,
    gen_tokens: u32,
    reps: usize,
    tools: bool,
}

fn parse_args() -> Args {
    let mut args =
        Args { model: "smollm2".into(), threads: None, prompt_tokens: 256, gen_tokens: 128, reps: 3, tools: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--threads" => args.threads = Some(value().parse().expect("--threads N")),
            "--prompt-tokens" => args.prompt_tokens = value().parse().expect("--prompt-tokens N"),
            "--gen-tokens" => args.gen_tokens = value().parse().expect("--gen-tokens N"),
            "--reps" => args.reps = value().parse().expect("--reps N"),
            "--tools" => args.tools = true,
            _ => args.model = arg,
        }
    }
    args
}

/// A user message of roughly `tokens` tokens (about 4 characters each),
/// different per repetition so no prompt cache is reused between them.
fn prompt(tokens: usize, rep: usize) -> String {
    let mut text = format!("Request {rep}. Here are some notes to keep in mind.");
    let words = ["ledger", "invoice", "shipment", "warehouse", "customer", "refund", "carrier", "parcel"];
    let mut i = rep;
    while text.len() < tokens * 4 {
        text.push(' ');
        text.push_str(words[i % words.len()]);
        i += 3;
    }
    text.push_str("\nNow write a long, detailed story about a lighthouse keeper.");
    text
}

fn tool() -> ToolSpec {
    ToolSpec::new(
        ToolName::new("create_ticket").expect("valid name"),
        "Open a support ticket.",
        serde_json::json!({"type": "object", "properties": {
            "title": {"type": "string", "maxLength": 400},
            "priority": {"type": "string", "enum": ["low", "normal", "urgent"]},
            "customer_id": {"type": "integer", "minimum": 1}
        }, "required": ["title", "priority", "customer_id"], "additionalProperties": false}),
        RiskTier::Write,
    )
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
    let config = LocalConfig { threads: args.threads, context_length: Some(4096), tool_choice: None };
    let mut model = LocalModel::open(&args.model, config).unwrap_or_else(|e| panic!("{e}"));
    let tools = if args.tools { vec![tool()] } else { Vec::new() };
    if args.tools {
        model = model.with_tool_choice(ToolChoice::Required);
    }
    let (mut pp_tokens, mut pp_time, mut tg_tokens, mut tg_time) = (0u64, Duration::ZERO, 0u64, Duration::ZERO);
    for rep in 0..=args.reps {
        let messages = vec![Message::User { text: prompt(args.prompt_tokens, rep) }];
        let request = ModelRequest {
            model: &args.model,
            messages: &messages,
            tools: &tools,
            max_output_tokens: Some(args.gen_tokens),
            temperature: Some(0.0),
            top_p: None,
            seed: Some(1),
            stop: &[],
            output_schema: None,
        };
        let generation = model.generate(&request, &|_| {}).await.unwrap_or_else(|e| panic!("{e}"));
        // The first repetition warms up caches and builds the grammar's
        // token trie; it is not counted.
        if rep == 0 {
            continue;
        }
        pp_tokens += u64::from(generation.prompt_tokens - generation.cached_tokens);
        pp_time += generation.prompt_time;
        tg_tokens += u64::from(generation.output_tokens);
        tg_time += generation.generation_time;
    }
    let info = model.info();
    println!(
        "{{\"engine\": \"rein-local\", \"model\": {:?}, \"threads\": {}, \"constrained\": {}, \"prompt_tokens\": {}, \"prompt_tok_s\": {:.1}, \"gen_tokens\": {}, \"gen_tok_s\": {:.1}, \"peak_rss_mib\": {:.0}, \"context\": {}}}",
        info.description,
        args.threads.map_or_else(|| "\"all\"".to_owned(), |t| t.to_string()),
        args.tools,
        pp_tokens / args.reps as u64,
        pp_tokens as f64 / pp_time.as_secs_f64(),
        tg_tokens / args.reps as u64,
        tg_tokens as f64 / tg_time.as_secs_f64(),
        peak_rss_mib(),
        info.context_length,
    );
}
