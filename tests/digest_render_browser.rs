//! The digest's HTML as a reader sees it: the demo data is scanned and digested into a file
//! outbox, the HTML part and its inline chart are taken out of the message, and headless
//! Chromium (Debian's `chromium`; `CHROMIUM` may name another binary) renders them to a
//! screenshot. The screenshot must show the header band, the chart (its bars in the category
//! colours, which only appear when the `cid:` image was found and drawn) and one banded heading
//! per force section, in that order, with text in them. The HTML itself must be self-contained:
//! no scripts, no style sheets, no external resources, inline CSS only.
//!
//! Without Chromium the test prints "skipped: ..." and passes, except under `REQUIRE_PEERS=1`
//! (CI), where it fails. With `WRITE_DOCS_SCREENSHOT=1` it also writes the README's
//! `docs/digest.png` from the same screenshot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use mail_parser::{MessageParser, MimeHeaders};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 2000;
/// The template's colours the checks look for.
const HEADER_BAND: Rgb = (0x1d, 0x35, 0x57);
const SECTION_BAND: Rgb = (0xe9, 0xec, 0xef);
const PAGE: Rgb = (0xf4, 0xf4, 0xf4);
/// The chart's bar colours, by category (`src/digest/chart.rs`).
const CATEGORY_COLOURS: [(&str, Rgb); 9] = [
    ("operational", (0xD5, 0x5E, 0x00)),
    ("personal data", (0x00, 0x72, 0xB2)),
    ("media contact", (0xE6, 0x9F, 0x00)),
    ("discriminatory offensive", (0xCC, 0x79, 0xA7)),
    ("alcohol drugs", (0x00, 0x9E, 0x73)),
    ("sexual nudity", (0x56, 0xB4, 0xE9)),
    ("political", (0xF0, 0xE4, 0x42)),
    ("gifts hospitality", (0x8C, 0x56, 0x4B)),
    ("secondary employment", (0x7F, 0x7F, 0x7F)),
];

type Rgb = (u8, u8, u8);

fn required() -> bool {
    std::env::var("REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// The Chromium binary: `CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.exists(), "CHROMIUM={} does not exist", p.display());
        return Some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    assert!(!required(), "REQUIRE_PEERS=1 but chromium is not installed (.ci/run installs Debian's `chromium`)");
    eprintln!("skipped: chromium not found (apt-get install -y chromium, or set CHROMIUM)");
    println!("skipped: chromium not found");
    None
}

/// One digest message taken apart: its route label, HTML and chart image.
struct Digest {
    to: String,
    html: String,
    chart: Option<(String, Vec<u8>)>,
}

fn digests(outbox: &Path) -> Vec<Digest> {
    common::emls(outbox)
        .iter()
        .map(|raw| {
            let msg = MessageParser::default().parse(raw.as_bytes()).expect("a parseable .eml");
            let to = msg.to().map(|a| a.iter().filter_map(|x| x.address()).collect::<Vec<_>>().join(",")).unwrap_or_default();
            let html = msg.body_html(0).expect("an HTML part").to_string();
            let chart = msg.parts.iter().find_map(|p| {
                let ct = p.content_type()?;
                (ct.ctype() == "image" && ct.subtype() == Some("png"))
                    .then(|| (p.content_id().expect("the image has a Content-ID").to_string(), p.contents().to_vec()))
            });
            Digest { to, html, chart }
        })
        .collect()
}

/// The HTML must render where mail clients strip scripts and styles and block remote content.
fn assert_self_contained(html: &str, content_id: Option<&str>, to: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in ["<script", "<link", "<style", "<iframe", "<object", "<embed", "<form", "<base", "@import", "url(", "http-equiv"] {
        assert!(!lower.contains(bad), "{bad} in the HTML for {to}");
    }
    let doc = scraper::Html::parse_document(html);
    let all = scraper::Selector::parse("*").unwrap();
    let mut images = 0;
    for el in doc.select(&all) {
        let v = el.value();
        assert!(!v.name().eq_ignore_ascii_case("script") && !v.name().eq_ignore_ascii_case("style"));
        for (name, value) in v.attrs() {
            assert!(!name.starts_with("on"), "event handler {name} in the HTML for {to}");
            if matches!(name, "src" | "background" | "srcset" | "poster" | "data") {
                let cid = value.strip_prefix("cid:").unwrap_or_else(|| panic!("{name}={value:?} is not an inline part ({to})"));
                assert_eq!(Some(cid), content_id, "an image the message does not carry ({to})");
                images += 1;
            }
            if name == "href" {
                let v = value.to_ascii_lowercase();
                assert!(v.starts_with("https://") || v.starts_with("http://"), "link {value:?} in the HTML for {to}");
            }
        }
    }
    assert_eq!(images, usize::from(content_id.is_some()), "the chart is shown exactly once when the message has it ({to})");
}

/// Run Chromium on `page` and return the decoded screenshot (RGB rows).
fn screenshot(chromium: &Path, dir: &Path, page: &Path, name: &str) -> (u32, u32, Vec<u8>) {
    let shot = dir.join(format!("{name}.png"));
    let profile = tempfile::tempdir_in(dir).unwrap();
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("--window-size={WIDTH},{HEIGHT}"))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().ok();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(status.success() && shot.exists(), "chromium failed ({status}):\n{log}");
    decode(&std::fs::read(&shot).unwrap())
}

fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    let rgb: Vec<u8> = buf.chunks(channels).flat_map(|p| [p[0], p[1 % channels], p[2 % channels]]).collect();
    (info.width, info.height, rgb)
}

struct Shot {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Shot {
    fn at(&self, x: u32, y: u32) -> Rgb {
        let i = ((y * self.w + x) * 3) as usize;
        (self.px[i], self.px[i + 1], self.px[i + 2])
    }

    /// Rows (top to bottom) in which `colour` fills a run of at least `min` adjacent pixels
    /// (a bar, not anti-aliased text or a 10 px legend swatch).
    fn solid_rows(&self, min: u32, colour: Rgb) -> Vec<u32> {
        (0..self.h)
            .filter(|&y| {
                let mut run = 0;
                (0..self.w).any(|x| {
                    run = if near(self.at(x, y), colour) { run + 1 } else { 0 };
                    run >= min
                })
            })
            .collect()
    }

    /// Rows (top to bottom) in which `pred` holds for at least `min` pixels.
    fn rows(&self, min: usize, pred: impl Fn(u32, u32) -> bool) -> Vec<u32> {
        (0..self.h).filter(|&y| (0..self.w).filter(|&x| pred(x, y)).count() >= min).collect()
    }
}

fn near(a: Rgb, b: Rgb) -> bool {
    a.0.abs_diff(b.0) <= 4 && a.1.abs_diff(b.1) <= 4 && a.2.abs_diff(b.2) <= 4
}

fn dark(c: Rgb) -> bool {
    (c.0 as u32 + c.1 as u32 + c.2 as u32) < 3 * 90
}

/// Runs of consecutive rows: (first, last).
fn bands(rows: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = vec![];
    for &y in rows {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == y => *last = y,
            _ => out.push((y, y)),
        }
    }
    out
}

/// Rows of the section headings: a 4 px header-coloured left border right before the band
/// colour (the header band itself has no band colour beside it).
fn section_rows(s: &Shot) -> Vec<u32> {
    s.rows(1, |x, y| {
        x >= 1
            && x + 12 < s.w
            && !near(s.at(x - 1, y), HEADER_BAND)
            && (x..x + 4).all(|x| near(s.at(x, y), HEADER_BAND))
            && (x + 4..x + 12).all(|x| near(s.at(x, y), SECTION_BAND))
    })
}

#[test]
fn the_demo_digest_renders_in_chromium_with_its_sections_and_chart() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    let out = Command::cargo_bin("exposure-monitor").unwrap().arg("--config").arg(&config).arg("run").output().unwrap();
    assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
    let digests = digests(&dir.path().join("outbox"));
    assert!(digests.len() >= 2, "expected a digest per route with hits, got {}", digests.len());
    for d in &digests {
        assert_self_contained(&d.html, d.chart.as_ref().map(|(cid, _)| cid.as_str()), &d.to);
        assert!(d.chart.is_some(), "a digest with hits shows its chart ({})", d.to);
    }

    // The default route carries several forces: the richest page.
    let d = digests.iter().find(|d| d.to.contains("psd-triage@")).expect("a digest for the default route");
    let (cid, png) = d.chart.as_ref().unwrap();
    let page_dir = dir.path().join("page");
    std::fs::create_dir(&page_dir).unwrap();
    std::fs::write(page_dir.join("chart.png"), png).unwrap();
    let reference = format!("cid:{cid}");
    assert!(d.html.contains(&reference), "the HTML references {reference}");
    let page = page_dir.join("digest.html");
    std::fs::write(&page, d.html.replace(&reference, "chart.png")).unwrap();

    // What the HTML promises: which categories the chart has, how many force sections.
    let doc = scraper::Html::parse_document(&d.html);
    let h2 = scraper::Selector::parse("h2").unwrap();
    let headings: Vec<String> = doc.select(&h2).map(|e| e.text().collect::<String>()).collect();
    let forces: Vec<&String> = headings.iter().filter(|t| t.contains(" hit")).filter(|t| !t.contains("new hit")).collect();
    assert!(forces.len() >= 2, "the default route should carry several forces: {headings:?}");
    let chart_categories: Vec<Rgb> =
        CATEGORY_COLOURS.iter().filter(|(name, _)| d.html.contains(&format!("</span> {name}</td>"))).map(|(_, c)| *c).collect();
    assert!(!chart_categories.is_empty(), "the chart's legend names its categories");

    let (w, h, px) = screenshot(&chromium, dir.path(), &page, "digest");
    assert_eq!((w, h), (WIDTH, HEIGHT), "screenshot size");
    let s = Shot { w, h, px };

    // 1. The header band: a wide run of the header colour at the top, with (white) text in it.
    let header = bands(&s.rows(250, |x, y| near(s.at(x, y), HEADER_BAND)));
    let (h_top, h_bottom) = *header.first().expect("the header band is drawn");
    assert!(h_top < 80 && h_bottom - h_top >= 40, "header band at rows {h_top}..{h_bottom}");
    let header_text = (h_top..=h_bottom)
        .flat_map(|y| (0..s.w).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let c = s.at(x, y);
            c.0 > 200 && c.1 > 200 && c.2 > 200
        })
        .count();
    assert!(header_text > 300, "no title text in the header band ({header_text} light pixels)");

    // 2. The chart: its bar colours appear below the header and above the first force section.
    let sections = bands(&section_rows(&s));
    assert_eq!(sections.len(), forces.len(), "one banded heading per force section ({forces:?}); found bands at {sections:?}");
    let first_section = sections[0].0;
    for colour in &chart_categories {
        let rows = s.solid_rows(20, *colour);
        assert!(!rows.is_empty(), "the chart's colour {colour:?} is not on the page: the image did not render");
        assert!(
            rows[0] > h_bottom && rows[0] < first_section,
            "chart colour {colour:?} at row {} outside the chart area",
            rows[0]
        );
    }

    // 3. Each force section's heading band has its text (dark pixels inside the band).
    for &(top, bottom) in &sections {
        assert!(bottom - top >= 20, "section band {top}..{bottom} too thin");
        let text = (top..=bottom).flat_map(|y| (20..s.w).map(move |x| (x, y))).filter(|&(x, y)| dark(s.at(x, y))).count();
        assert!(text > 150, "no heading text in the section band at rows {top}..{bottom} ({text} dark pixels)");
    }

    // The same page without the image file: the colour checks above must then fail, so they
    // really see the chart (bars at least 20 px wide; the legend swatches are 10 px).
    let broken = page_dir.join("broken.html");
    std::fs::write(&broken, d.html.replace(&reference, "missing.png")).unwrap();
    let (bw, bh, bpx) = screenshot(&chromium, dir.path(), &broken, "broken");
    let b = Shot { w: bw, h: bh, px: bpx };
    for colour in &chart_categories {
        assert!(b.solid_rows(20, *colour).is_empty(), "{colour:?} drawn although the chart is missing");
    }

    if std::env::var("WRITE_DOCS_SCREENSHOT").is_ok_and(|v| v == "1") {
        write_docs_screenshot(&s);
    }
}

/// `docs/digest.png`: the screenshot cut to the message (plus a 16 px margin of the page).
fn write_docs_screenshot(s: &Shot) {
    let content = |x: u32, y: u32| !near(s.at(x, y), PAGE);
    let bottom = (0..s.h).rev().find(|&y| (0..s.w).any(|x| content(x, y))).expect("a rendered page");
    let left = (0..s.w).find(|&x| (0..s.h).any(|y| content(x, y))).unwrap();
    let right = (0..s.w).rev().find(|&x| (0..s.h).any(|y| content(x, y))).unwrap();
    let (x0, x1, y1) = (left.saturating_sub(16), (right + 17).min(s.w), (bottom + 17).min(s.h));
    let (w, h) = (x1 - x0, y1);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        let row = ((y * s.w + x0) * 3) as usize;
        rgb.extend_from_slice(&s.px[row..row + (w * 3) as usize]);
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::High);
        let mut writer = enc.write_header().unwrap();
        writer.write_image_data(&rgb).unwrap();
    }
    assert!(out.len() < 300 * 1024, "docs/digest.png would be {} bytes", out.len());
    let path = common::repo().join("docs").join("digest.png");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, out).unwrap();
    println!("wrote {} ({w}x{h})", path.display());
}

/// The chart's figures, checked against the hits each message carries: on a fresh database every
/// hit was found by this run and goes out in its digest, so for every route the chart's totals
/// (text table and HTML table alike) must equal what the message lists. No browser needed.
#[test]
fn the_charts_figures_match_the_hits_of_each_message_in_both_parts() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::demo_config(dir.path(), "");
    let out = Command::cargo_bin("exposure-monitor").unwrap().arg("--config").arg(&config).arg("run").output().unwrap();
    assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
    let raws = common::emls(&dir.path().join("outbox"));
    assert!(raws.len() >= 2);
    for raw in &raws {
        let msg = MessageParser::default().parse(raw.as_bytes()).unwrap();
        let text = msg.body_text(0).unwrap().to_string();
        let html = msg.body_html(0).unwrap().to_string();
        // What the message lists: "  Hit #N | SEVERITY | cat_a, cat_b | time".
        let mut listed: std::collections::BTreeMap<String, u64> = Default::default();
        let mut hits = 0u64;
        for line in text.lines().filter(|l| l.starts_with("  Hit #")) {
            hits += 1;
            let cats = line.split(" | ").nth(2).unwrap_or_else(|| panic!("hit line {line:?}"));
            for c in cats.split(", ") {
                *listed.entry(c.replace('_', " ")).or_default() += 1;
            }
        }
        assert!(hits > 0, "a message without hits:\n{text}");
        // The text part's table: "  <category> <14 day cells> <total>".
        assert!(text.contains("Hits per category,"), "no chart table in the text part:\n{text}");
        let table_total = |label: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.strip_prefix("  ").is_some_and(|r| r.starts_with(&format!("{label} "))))?;
            let cells: Vec<&str> = line[2 + label.len()..].split_whitespace().collect();
            assert_eq!(cells.len(), 15, "14 days and a total in {line:?}");
            // Found today (or yesterday, when the run crossed midnight UTC).
            assert!(cells[..12].iter().all(|c| *c == "."), "hits from before the run in a fresh database: {line:?}");
            let n = |c: &str| if c == "." { 0 } else { c.parse::<u64>().unwrap() };
            let total = n(cells[14]);
            assert_eq!(n(cells[12]) + n(cells[13]), total, "the days add up to the total: {line:?}");
            Some(total)
        };
        assert_eq!(table_total("all hits"), Some(hits), "{text}");
        for (category, n) in &listed {
            assert_eq!(table_total(category), Some(*n), "{category} in\n{text}");
        }
        // The HTML legend table has the same rows and totals.
        let doc = scraper::Html::parse_document(&html);
        let tr = scraper::Selector::parse("tr").unwrap();
        let td = scraper::Selector::parse("td").unwrap();
        let mut html_rows: std::collections::BTreeMap<String, u64> = Default::default();
        for row in doc.select(&tr) {
            let cells: Vec<String> =
                row.select(&td).map(|c| c.text().collect::<String>().trim().replace('\u{a0}', "").trim().to_string()).collect();
            if cells.len() == 16 {
                html_rows.insert(cells[0].clone(), cells[15].parse().unwrap());
            }
        }
        let mut expected = listed.clone();
        expected.insert("All hits".into(), hits);
        assert_eq!(html_rows, expected, "the HTML chart table");
    }
}
