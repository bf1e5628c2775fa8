//! Detection speed: identify and classify over a synthetic stream of 100,000 posts with the whole
//! rule set in `patterns/` loaded. Reports posts per second (criterion's "thrpt", one core: the
//! benchmark runs on one thread).
//!
//!     cargo bench --bench detect
//!
//! The stream is generated deterministically from fragments: most posts are ordinary chatter
//! (as on any platform), some carry identity signals, a few carry risky content, in English and
//! Welsh, with lengths from a few words to a few hundred characters.

use std::hint::black_box;
use std::path::Path;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exposure_monitor::forces::Forces;
use exposure_monitor::model::{Account, Post};
use exposure_monitor::patterns::Detector;

const POSTS: usize = 100_000;

const CHATTER: &[&str] = &[
    "Lovely walk along the canal this morning, the herons were out in force.",
    "Anyone know a decent plumber in the area? Boiler's packed in again.",
    "Match day! Come on you blues, three points today please.",
    "Made a sourdough loaf that actually rose. Small victories.",
    "Traffic on the ring road is a nightmare, leave early if you can.",
    "Reading a brilliant book about the history of the railways.",
    "Bore da pawb! Mae'r tywydd yn braf heddiw yng Nghaerdydd.",
    "Diolch i bawb am ddod i'r cyngerdd neithiwr, noson wych.",
    "Happy birthday to my little sister, have a great day x",
    "The new coffee place on the high street is worth a visit.",
];

const IDENTITY: &[&str] = &[
    "Long night shift on response, glad to be home. Views my own.",
    "Custody was rammed tonight, proud of the team.",
    "Tutor constable again from Monday, new student officer starting.",
    "Back on the beat after leave, good to see the team.",
];

const RISKY: &[&str] = &[
    "Warrant at 14 Elmtree Close tomorrow 6am, bring the big key.",
    "Ran the plate AB12 CDE on PNC for a mate, turns out it's his ex's new fella.",
    "Victim is Jane from number 12, poor woman, her ex is a right piece of work.",
    "DM me if you want the inside story on the raid, off the record of course.",
    "Got free tickets to the match from the club owner, cheers mate!",
    "Absolutely hammered after the shift do, can't feel my face.",
    "This government is a disgrace, everyone vote them out at the election.",
];

/// A deterministic pseudo-random sequence (no dependency needed for a benchmark's input).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }
}

fn stream() -> Vec<Post> {
    let mut rng = Lcg(20111122);
    let created = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
    (0..POSTS)
        .map(|i| {
            let roll = rng.next() % 100;
            let mut text = String::new();
            for _ in 0..=(rng.next() % 3) {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(match roll {
                    0..=79 => rng.pick(CHATTER),
                    80..=94 => rng.pick(IDENTITY),
                    _ => rng.pick(RISKY),
                });
            }
            Post {
                platform: "bench".into(),
                platform_id: format!("p{i}"),
                author_id: format!("a{}", i % 5_000),
                created_at: created,
                text,
                alt_texts: vec![],
                lang_hints: vec![],
                url: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns");
    let forces = Forces::embedded();
    let detector = match Detector::load(&dir, &forces) {
        Ok(d) => d,
        Err(errors) => panic!("pattern files do not load: {errors:?}"),
    };
    let posts = stream();
    let account = Account {
        platform: "bench".into(),
        platform_id: "a1".into(),
        handle: "pc_bench".into(),
        display_name: "PC 1234 | Kent Police".into(),
        bio: "Response officer. Views my own.".into(),
        profile_url: None,
    };

    let mut group = c.benchmark_group("detect");
    group.sample_size(10);
    group.throughput(Throughput::Elements(POSTS as u64));
    group.bench_function("identify_post_signals_100k", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for p in &posts {
                n += detector.identifier.post_signals(black_box(p)).evidence.len();
            }
            n
        })
    });
    group.bench_function("identify_accounts_100k", |b| {
        let signals = detector.identifier.post_signals(&posts[POSTS / 2]);
        b.iter(|| {
            let mut n = 0usize;
            for _ in 0..POSTS {
                n += detector.identifier.identify(black_box(&account), black_box(&signals)).evidence.len();
            }
            n
        })
    });
    group.bench_function("classify_100k", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for p in &posts {
                n += detector.classifier.classify(black_box(p)).findings.len();
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
