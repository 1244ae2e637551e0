//! Sequential HTTP latency with the thinnest client there is: one keep-alive TCP connection, a
//! request formatted by hand, the answer read until its `content-length` is in. It measures a
//! server without the benchmark client's own cost on top (`compare_etcd`'s load generator uses
//! `reqwest`, about 55 us of CPU per request on this machine, all of it in series with a
//! sequential write), to split a sequential put between the client and the server
//! (docs/ARCHITECTURE.md, "Sequential put on a second host", issue 17).
//!
//! `cargo run --release -p ha-bench --bin raw_http_latency -- --addr 127.0.0.1:7201 --method PUT
//! --path '/v1/kv/k{i}' --body-bytes 128 --requests 3000`
//!
//! `{i}` in the path becomes the request's number modulo `--keys`. Every request waits for its
//! answer (the loop is bounded by `--requests` and each read by `--timeout-ms`); any answer
//! other than 2xx ends the run with an error, so a failing server cannot pass for a fast one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;
use ha_bench::LatencySummary;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(about = "Sequential HTTP/1.1 latency over one raw keep-alive connection")]
struct Options {
    /// The server's address.
    #[arg(long)]
    addr: String,
    /// The request method.
    #[arg(long, default_value = "PUT")]
    method: String,
    /// The request path; `{i}` becomes the request number modulo `--keys`.
    #[arg(long, default_value = "/v1/kv/k{i}")]
    path: String,
    /// Bytes in each request's body (the letter `v` repeated; 0 for none).
    #[arg(long, default_value_t = 128)]
    body_bytes: usize,
    /// Requests to time, one after the other.
    #[arg(long, default_value_t = 3_000)]
    requests: usize,
    /// Distinct values of `{i}`.
    #[arg(long, default_value_t = 1_000)]
    keys: usize,
    /// Longest wait for one answer.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
}

/// Largest answer accepted (head and body).
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// Read one HTTP/1.1 answer from `stream` into `buffer`; its status code.
fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<u16, String> {
    buffer.clear();
    let mut chunk = [0_u8; 16 * 1024];
    loop {
        let read = stream.read(&mut chunk).map_err(|error| error.to_string())?;
        if read == 0 {
            return Err("the server closed the connection".into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if buffer.len() > ANSWER_BYTES_MAX {
            return Err(format!("an answer over {ANSWER_BYTES_MAX} bytes"));
        }
        let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
        if head.contains("transfer-encoding:") {
            return Err("a chunked answer (only content-length framing is read)".into());
        }
        let body = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(Ok(0), |value| value.trim().parse::<usize>())
            .map_err(|error| format!("content-length: {error}"))?;
        if buffer.len() >= end + 4 + body {
            return Ok(status);
        }
    }
}

/// Each request's time in microseconds, in the order sent.
fn run(options: &Options) -> Result<Vec<u64>, String> {
    let mut stream = TcpStream::connect(&options.addr).map_err(|error| error.to_string())?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(options.timeout_ms)))
        .map_err(|error| error.to_string())?;
    let body = "v".repeat(options.body_bytes);
    let mut buffer = Vec::new();
    let mut times = Vec::with_capacity(options.requests);
    for number in 0..options.requests {
        let path = options
            .path
            .replace("{i}", &(number % options.keys.max(1)).to_string());
        let request = format!(
            "{} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: text/plain\r\n\
             content-length: {}\r\n\r\n{body}",
            options.method,
            options.addr,
            body.len()
        );
        let started = Instant::now();
        stream
            .write_all(request.as_bytes())
            .map_err(|error| error.to_string())?;
        let status = read_answer(&mut stream, &mut buffer)?;
        times.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        if !(200..300).contains(&status) {
            return Err(format!("request {number}: status {status}"));
        }
    }
    Ok(times)
}

fn main() {
    let options = Options::parse();
    match run(&options) {
        Ok(mut times) if !times.is_empty() => {
            let summary = LatencySummary::from_micros(&mut times);
            println!(
                "{} {}: {} requests, p50 {} us, p90 {} us, p99 {} us",
                options.method,
                options.path,
                summary.count,
                summary.p50_us,
                summary.p90_us,
                summary.p99_us
            );
        }
        Ok(_) => println!("no requests timed (--requests 0)"),
        Err(error) => {
            eprintln!("raw_http_latency: {error}");
            std::process::exit(1);
        }
    }
}
