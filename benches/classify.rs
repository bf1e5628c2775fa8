//! Classify speed with the full shipped rule set, against ripgrep running the same regexes over
//! the same texts, and how it scales with more rules.
//!
//!     cargo bench --bench classify
//!
//! Goals (issue 6): >= 200k posts/s on one core over 1M posts of a realistic stream, and within
//! 2x of `rg -c -f` (one thread) over the same texts; at 100 and 500 extra rules at most 2x
//! slower than with the shipped rules; loading and compiling the rule set with 500 extra rules
//! in < 2 s.
//!
//! Settings (environment):
//! - `CLASSIFY_POSTS`: posts per pass (default 1,000,000; a smaller N for callgrind);
//! - `CLASSIFY_PARTS`: comma-separated parts to run, of `base`, `rg`, `scale` (default all);
//! - `CLASSIFY_EXTRA`: comma-separated counts of synthetic rules for `scale` (default `100,500`;
//!   e.g. `500` alone to profile that pass).
//!
//! Posts come from `support/stream.rs` in chunks of 10,000 (memory stays bounded); only the
//! `classify` calls are timed, on this one thread. The reference writes the same texts
//! (`Post::full_text`, newlines replaced by spaces) one per line to a temporary file, and the
//! category rules' regexes, exactly as compiled by the loader, one per line to a pattern file.
//! The regexes need no translation: ripgrep uses the same regex crate syntax, so the loader's
//! `(?i)` (case-insensitive unless `case_sensitive = true`) and `(?-u:\b)` (ASCII word
//! boundaries) go over as they are. What rg does not run: the word-list rule (rustrict, behind
//! its own prefilter regex), the `near`/`not_near`/`except` context regexes of rules that fire,
//! the allowlisted-phrase mask and language detection: rg only answers "does any rule regex
//! match this line", which is the first, always-run step of classification.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use exposure_monitor::classify::Classifier;
use exposure_monitor::forces::Forces;
use exposure_monitor::model::Post;
use exposure_monitor::patterns::Detector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "support/measure.rs"]
mod measure;
#[path = "support/stream.rs"]
mod stream;

const CHUNK: usize = 10_000;
const GOAL_POSTS_PER_SEC: f64 = 200_000.0;
const GOAL_RG_RATIO: f64 = 2.0;
const GOAL_SCALING: f64 = 2.0;
const GOAL_COMPILE: Duration = Duration::from_secs(2);

fn main() {
    let n: usize = std::env::var("CLASSIFY_POSTS").ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(1_000_000);
    let parts = std::env::var("CLASSIFY_PARTS").unwrap_or_else(|_| "base,rg,scale".into());
    let want = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let patterns = repo.join("patterns");
    let forces = Forces::embedded();
    let tmp = tempfile::tempdir().expect("a temporary directory");
    // CLASSIFY_KEEP=DIR keeps the texts and rg pattern file there (for looking into a figure).
    let keep = std::env::var_os("CLASSIFY_KEEP").map(PathBuf::from);
    let tmp_path: &Path = keep.as_deref().unwrap_or(tmp.path());

    println!("classify benchmark: {n} posts of the synthetic stream, one thread");
    let started = Instant::now();
    let detector = load(&patterns, &forces);
    let load_time = started.elapsed();
    let classifier = &detector.classifier;
    println!("shipped rules: {} category rules, loaded and compiled in {:.0} ms", classifier.rule_count(), ms(load_time));

    let mut results: Vec<(String, bool)> = Vec::new();
    let mut base: Option<Pass> = None;
    if want("base") || want("rg") {
        let texts = want("rg").then(|| tmp_path.join("texts.txt"));
        let pass = classify_pass(classifier, n, texts.as_deref());
        pass.print("shipped rules");
        let met = pass.rate() >= GOAL_POSTS_PER_SEC;
        println!("  goal >= {:.0}k posts/s/core: {}", GOAL_POSTS_PER_SEC / 1000.0, verdict(met));
        results.push((format!("classify {:.0}k posts/s/core (goal >= 200k)", pass.rate() / 1000.0), met));
        if let Some(texts) = texts {
            if let Some(ratio) = rg_reference(classifier, &texts, tmp_path, &pass) {
                results.push((format!("{ratio:.2}x the time of rg (goal <= 2x)"), ratio <= GOAL_RG_RATIO));
            }
        }
        base = Some(pass);
    }

    if want("scale") {
        let base = base.unwrap_or_else(|| {
            let p = classify_pass(classifier, n, None);
            p.print("shipped rules");
            p
        });
        let extras = std::env::var("CLASSIFY_EXTRA").unwrap_or_else(|_| "100,500".into());
        for extra in extras.split(',').map(|x| x.trim().parse::<usize>().expect("CLASSIFY_EXTRA: counts of rules")) {
            let dir = tmp.path().join(format!("patterns-{extra}"));
            write_rule_dir(&patterns, &dir, extra);
            let started = Instant::now();
            let d = load(&dir, &forces);
            let compile = started.elapsed();
            println!(
                "\nshipped + {extra} synthetic rules: {} category rules, loaded and compiled in {:.0} ms",
                d.classifier.rule_count(),
                ms(compile)
            );
            let pass = classify_pass(&d.classifier, n, None);
            pass.print(&format!("+{extra} rules"));
            let slowdown = base.rate() / pass.rate();
            let met = slowdown <= GOAL_SCALING;
            println!("  {slowdown:.2}x slower than the shipped rules (goal <= 2x): {}", verdict(met));
            results
                .push((format!("+{extra} rules: {:.0}k posts/s, {slowdown:.2}x slower (goal <= 2x)", pass.rate() / 1000.0), met));
            if extra == 500 {
                let met = compile < GOAL_COMPILE;
                println!("  compile {:.0} ms (goal < 2 s): {}", ms(compile), verdict(met));
                results.push((format!("compile at +500 rules {:.0} ms (goal < 2 s)", ms(compile)), met));
            }
        }
    }

    println!("\nsummary:");
    for (what, met) in &results {
        println!("  {}: {what}", verdict(*met));
    }
    println!("peak RSS of the benchmark process: {:.0} MiB", measure::own_peak_rss_kib() as f64 / 1024.0);
}

fn load(dir: &Path, forces: &Forces) -> Detector {
    match Detector::load(dir, forces) {
        Ok(d) => d,
        Err(errors) => panic!("pattern files in {} do not load: {errors:#?}", dir.display()),
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What one pass of classification over the stream did.
struct Pass {
    posts: usize,
    bytes: usize,
    elapsed: Duration,
    hit_posts: usize,
    findings: usize,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.posts as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: {} posts ({:.0} MB of text) in {:.2} s = {:.0} posts/s/core ({:.1} MB/s); {} posts with findings, {} findings",
            self.posts,
            self.bytes as f64 / 1e6,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64(),
            self.hit_posts,
            self.findings
        );
    }
}

/// Classify `n` posts of the default stream; when `texts` is given, also write each post's
/// text there, one per line (not timed).
fn classify_pass(classifier: &Classifier, n: usize, texts: Option<&Path>) -> Pass {
    let mut out = texts.map(|p| BufWriter::new(std::fs::File::create(p).expect("create the texts file")));
    let mut s = stream::Stream::new(stream::StreamSpec::default());
    let mut pass = Pass { posts: 0, bytes: 0, elapsed: Duration::ZERO, hit_posts: 0, findings: 0 };
    let mut chunk: Vec<Post> = Vec::with_capacity(CHUNK);
    while pass.posts < n {
        chunk.clear();
        chunk.extend((&mut s).take(CHUNK.min(n - pass.posts)).map(|p| p.post));
        if let Some(out) = out.as_mut() {
            for p in &chunk {
                let line: String = p.full_text().chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
                writeln!(out, "{line}").expect("write the texts file");
            }
        }
        let started = Instant::now();
        for p in &chunk {
            let c = classifier.classify(black_box(p));
            pass.hit_posts += usize::from(c.is_hit_content());
            pass.findings += c.findings.len();
            black_box(c);
        }
        pass.elapsed += started.elapsed();
        pass.posts += chunk.len();
        pass.bytes += chunk.iter().map(|p| p.full_text().len()).sum::<usize>();
    }
    if let Some(mut out) = out {
        out.flush().expect("flush the texts file");
    }
    pass
}

/// Run `rg -j1 -c -f rules.txt texts.txt` (best of three) and report classify's time against it.
fn rg_reference(classifier: &Classifier, texts: &Path, tmp: &Path, pass: &Pass) -> Option<f64> {
    let rules: Vec<&str> = classifier.rules().iter().filter(|r| r.wordlist.is_none()).map(|r| r.pattern.as_str()).collect();
    let skipped = classifier.rule_count() - rules.len();
    assert!(rules.iter().all(|p| !p.contains('\n')), "a rule regex spans lines; rg -f reads one pattern per line");
    let rules_file = tmp.join("rules.txt");
    std::fs::write(&rules_file, rules.join("\n") + "\n").expect("write the rg pattern file");
    let version = match Command::new("rg").arg("--version").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string(),
        _ => {
            println!("  rg reference: skipped (ripgrep is not installed: `apt-get install -y ripgrep`)");
            return None;
        }
    };
    println!(
        "rg reference ({version}): {} rule regexes ({skipped} word-list rule not expressible as a regex), {} lines",
        rules.len(),
        pass.posts
    );
    let mut best: Option<measure::Measured> = None;
    for _ in 0..3 {
        let m = measure::run(Command::new("rg").args(["-j1", "-c", "--no-config", "-f"]).arg(&rules_file).arg(texts));
        // rg exits 1 when nothing matches; 2 is an error.
        assert!(matches!(m.exit_code, Some(0 | 1)), "rg failed: {}", m.stderr);
        if best.as_ref().map_or(true, |b| m.wall < b.wall) {
            best = Some(m);
        }
    }
    let m = best.expect("three runs");
    let rg_rate = pass.posts as f64 / m.wall.as_secs_f64();
    let ratio = pass.elapsed.as_secs_f64() / m.wall.as_secs_f64();
    println!(
        "  rg -j1 -c -f: {} matching lines in {:.2} s = {:.0} lines/s (peak RSS {:.0} MiB); classify takes {ratio:.2}x rg's time (goal <= 2x): {}",
        m.stdout.trim(),
        m.wall.as_secs_f64(),
        rg_rate,
        m.peak_rss_mib(),
        verdict(ratio <= GOAL_RG_RATIO)
    );
    Some(ratio)
}

// ---------------------------------------------------------------------------------------------
// Synthetic rules, written as an operator would: word lists, phrases with optional words,
// \b-bounded alternations with suffixes, proximity, a few case-sensitive name patterns, and
// Welsh rules, loaded through the real loader from a copy of the shipped pattern directory.

const CATEGORIES: &[&str] = &[
    "alcohol_drugs",
    "discriminatory_offensive",
    "gifts_hospitality",
    "media_contact",
    "operational",
    "personal_data",
    "political",
    "secondary_employment",
    "sexual_nudity",
];

#[rustfmt::skip]
const JARGON: &[&str] = &[
    "custody", "skipper", "sarge", "guv", "nick", "briefing", "parade", "tasking", "nominal", "suspect", "warrant",
    "raid", "obs", "plot", "intel", "source", "handler", "informant", "tout", "grass", "stash", "burner", "sim",
    "county lines", "trap house", "plug", "runner", "shotter", "wrap", "deal", "kilo", "bag", "score", "pills",
    "powder", "ket", "gear", "lean", "edibles", "spliff", "bong", "vape", "shots", "pints", "bottles", "cans",
    "tequila", "sambuca", "prosecco", "vodka", "rum", "whisky", "lager", "cider", "freebie", "discount", "voucher",
    "comp", "hamper", "tickets", "upgrade", "backhander", "bung", "kickback", "favour", "mate's rates", "cash",
    "envelope", "reporter", "journalist", "hack", "editor", "newsdesk", "scoop", "exclusive", "leak", "tip-off",
    "story", "quote", "byline", "address", "postcode", "plate", "reg", "VRM", "DOB", "NI number", "phone number",
    "mobile", "landline", "flat", "estate", "victim", "witness", "complainant", "ballot", "rally", "march",
    "picket", "candidate", "councillor", "MP", "minister", "manifesto", "canvass", "leaflet", "second job",
    "side hustle", "cash in hand", "door work", "bouncer", "security", "taxi", "driving lessons", "onlyfans",
    "nudes", "lingerie", "topless", "naked", "strip", "escort", "hook up", "tinder", "grindr", "sugar daddy",
    "uniform", "kit", "badge", "warrant card", "collar number", "shoulder number", "ANPR", "PNC", "CCTV", "DNA",
    "forensics", "phone dump", "cell site", "alibi", "interview", "charge", "bail", "remand", "cell", "van",
];

/// Ordinary words that also occur in the stream, so some synthetic rules fire (as real rules
/// with everyday words do) and their context checks run.
#[rustfmt::skip]
const EVERYDAY: &[&str] = &[
    "coffee", "train", "work", "meeting", "release", "match", "gig", "dinner", "friends", "weekend", "home",
    "street", "shop", "market", "bus", "photo", "music", "holiday", "beach", "bike",
];

#[rustfmt::skip]
const CONTEXT: &[&str] = &[
    "tomorrow", "tonight", "on shift", "in uniform", "on duty", "at work", "next week", "this morning", "later",
    "after the shift", "before briefing", "in the van", "at the nick", "off the record", "DM me", "for free",
];

#[rustfmt::skip]
const BENIGN: &[&str] = &[
    "arrested", "court", "press release", "statement", "appeal", "fiction", "novel", "episode", "game", "quiz",
    "charity", "raffle", "seized", "sentenced", "film", "podcast",
];

#[rustfmt::skip]
const WELSH: &[&str] = &[
    "meddw", "peint", "cwrw", "gwin", "fodca", "parti", "shifft", "gwaith", "heddlu", "swyddog", "carchar",
    "cyffuriau", "arian", "am ddim", "tocynnau", "newyddiadurwr", "stori", "cyfeiriad", "rhif ffôn", "car",
    "etholiad", "pleidlais", "plaid", "gwleidydd", "noeth", "lluniau", "ail swydd", "arian parod", "tacsi",
];

#[rustfmt::skip]
const NAMES: &[&str] = &["Smith", "Jones", "Patel", "Evans", "Khan", "Taylor", "Hughes", "Okafor", "Murphy", "Price"];

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from[rng.gen_range(0..from.len())]
}

fn picks<'a>(rng: &mut StdRng, from: &[&'a str], n: usize) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::with_capacity(n);
    while v.len() < n.min(from.len()) {
        let w = pick(rng, from);
        if !v.contains(&w) {
            v.push(w);
        }
    }
    v
}

/// A word or phrase as a regex: escaped, spaces as one space.
fn re_word(w: &str) -> String {
    regex::escape(w)
}

fn toml_list(items: &[&str]) -> String {
    format!("[{}]", items.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", "))
}

/// Copy the shipped pattern files to `dir` and add `extra` synthetic rules in `synthetic.toml`.
fn write_rule_dir(shipped: &Path, dir: &Path, extra: usize) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the rule directory");
    for e in std::fs::read_dir(shipped).expect("read patterns/") {
        let p = e.expect("a directory entry").path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&p, dir.join(p.file_name().expect("a file name"))).expect("copy a pattern file");
        }
    }
    let mut rng = StdRng::seed_from_u64(500 + extra as u64);
    let mut out = String::from("# Synthetic rules for benches/classify.rs (generated).\n");
    for i in 0..extra {
        let category = pick(&mut rng, CATEGORIES);
        let severity = pick(&mut rng, &["low", "medium", "high"]);
        let _ = write!(out, "\n[[rule]]\nid = \"synth.r{i:04}\"\ncategory = \"{category}\"\nseverity = \"{severity}\"\n");
        // Every fifth rule or so draws one everyday word into its list.
        let mut vocab: Vec<&str> = JARGON.to_vec();
        if rng.gen_ratio(1, 5) {
            vocab = picks(&mut rng, EVERYDAY, 1).into_iter().chain(picks(&mut rng, JARGON, 30)).collect();
        }
        let example: String;
        match i % 6 {
            // A word list.
            0 => {
                let n = rng.gen_range(3..13);
                let terms = picks(&mut rng, &vocab, n);
                let _ = writeln!(out, "terms = {}", toml_list(&terms));
                example = format!("well {} again", terms[0]);
            }
            // Phrases with optional words.
            1 => {
                let mut alts = Vec::new();
                let mut first = String::new();
                for k in 0..rng.gen_range(2..5) {
                    let [a, b, c] = [pick(&mut rng, &vocab), pick(&mut rng, CONTEXT), pick(&mut rng, &["the", "a", "my", "our"])];
                    alts.push(format!("{}(?: {})? {}", re_word(a), re_word(c), re_word(b)));
                    if k == 0 {
                        first = format!("{a} {c} {b}");
                    }
                }
                let _ = writeln!(out, "regex = '''\\b(?:{})\\b'''", alts.join("|"));
                example = format!("so {first} then");
            }
            // A \b-bounded alternation with suffixes, near a context word.
            2 => {
                let n = rng.gen_range(8..26);
                let words = picks(&mut rng, &vocab, n);
                let alts: Vec<String> = words.iter().map(|w| re_word(w)).collect();
                let _ = writeln!(out, "regex = '''\\b(?:{})(?:s|es|ed|ing)?\\b'''", alts.join("|"));
                let k = rng.gen_range(2..6);
                let near = picks(&mut rng, CONTEXT, k);
                let within = rng.gen_range(4..15);
                let _ = writeln!(out, "near = {{ terms = {}, within = {within} }}", toml_list(&near));
                example = format!("{} {}", words[0], near[0]);
            }
            // Alternation with a not_near of benign contexts.
            3 => {
                let n = rng.gen_range(4..12);
                let words = picks(&mut rng, &vocab, n);
                let alts: Vec<String> = words.iter().map(|w| re_word(w)).collect();
                let _ = writeln!(out, "regex = '''\\b(?:(?:my|our|the) )?(?:{})\\b'''", alts.join("|"));
                let k = rng.gen_range(3..8);
                let not = picks(&mut rng, BENIGN, k);
                let _ = writeln!(out, "not_near = {{ terms = {}, within = {} }}", toml_list(&not), rng.gen_range(5..20));
                example = format!("the {} today", words[0]);
            }
            // Case-sensitive names and operation names.
            4 => {
                let names = picks(&mut rng, NAMES, 4);
                let what = picks(&mut rng, &vocab, 3);
                let _ = writeln!(out, "case_sensitive = true");
                let _ = writeln!(
                    out,
                    "regex = '''\\b(?:(?:PC|DC|PS|DS|Sgt) (?:{})|Op(?:eration)? [A-Z][a-z]{{3,}}) (?:{})\\b'''",
                    names.join("|"),
                    what.iter().map(|w| re_word(w)).collect::<Vec<_>>().join("|")
                );
                example = format!("PC {} {}", names[0], what[0]);
            }
            // Welsh.
            _ => {
                let k = rng.gen_range(3..8);
                let terms = picks(&mut rng, WELSH, k);
                let _ = writeln!(out, "languages = [\"cym\"]\nterms = {}", toml_list(&terms));
                example = format!("dw i {} heddiw", terms[0]);
            }
        }
        let _ = writeln!(out, "match = [{example:?}]");
    }
    std::fs::write(dir.join("synthetic.toml"), out).expect("write synthetic.toml");
    dir.to_path_buf()
}
