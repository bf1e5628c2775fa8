//! Synthetic but realistic social-media streams for the performance-budget benchmarks.
//!
//! A stream is a population of accounts and an endless, deterministic sequence of their posts,
//! shaped after what a whole-network feed (Bluesky's Jetstream, a Mastodon federated timeline)
//! carries:
//! - post lengths: mostly short, a long tail up to the platforms' limits (a log-normal-like mix:
//!   ~30% under 60 characters, median ~110, ~5% over 280, capped at 500);
//! - languages: about half the posts are not English (Japanese, Portuguese, Spanish, German,
//!   French, Korean, with some Welsh among the rest), as on the open networks;
//! - identity: a few per cent of accounts self-identify as police in their profile (HMIC's 2011
//!   review found 3.4%); their posts now and then carry identity talk;
//! - hits: a few per cent of those officers' posts carry risky content (operational detail,
//!   personal data, drink, politics, media contact), and a small share of everyone's posts
//!   carry words that look risky but are not (bait for false positives).
//!
//! The text is generated from word lists written for this module (not from the labelled corpus),
//! so the figures measure the engine, not memorised phrases. Everything derives from the seed:
//! the same spec gives the same stream on every run and machine (for a given `Cargo.lock`).

#![allow(dead_code)] // each benchmark uses a different part

use chrono::{DateTime, Duration, TimeZone, Utc};
use exposure_monitor::model::{Account, Post};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The shape of a stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub seed: u64,
    /// Accounts in the population (posts are spread over them, some much more active).
    pub accounts: usize,
    /// Share of accounts whose profile self-identifies as police.
    pub police_share: f64,
    /// Share of an officer's posts with risky content.
    pub risky_share: f64,
    /// Share of posts not in English.
    pub non_english_share: f64,
    /// Platform name put on accounts and posts.
    pub platform: &'static str,
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            seed: 2011_11_22,
            accounts: 20_000,
            police_share: 0.03,
            risky_share: 0.05,
            non_english_share: 0.5,
            platform: "synthetic",
        }
    }
}

/// One synthetic account, with whether the generator made it self-identify as police.
#[derive(Debug, Clone)]
pub struct SynthAccount {
    pub account: Account,
    pub police: bool,
}

/// One synthetic post, with the generator's own labels (what it meant to put in the text).
#[derive(Debug, Clone)]
pub struct SynthPost {
    pub post: Post,
    /// Index of the author in [`Stream::accounts`].
    pub author: usize,
    /// The post carries risky content (by an officer) on purpose.
    pub risky: bool,
    /// BCP 47-ish language tag of the text, as a platform would give it.
    pub lang: &'static str,
}

/// A deterministic stream of posts by a synthetic population.
pub struct Stream {
    pub spec: StreamSpec,
    pub accounts: Vec<SynthAccount>,
    rng: StdRng,
    next: u64,
    start: DateTime<Utc>,
}

impl Stream {
    pub fn new(spec: StreamSpec) -> Stream {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let accounts = (0..spec.accounts).map(|i| make_account(&mut rng, &spec, i)).collect();
        Stream { spec, accounts, rng, next: 0, start: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() }
    }

    /// The accounts that self-identify as police.
    pub fn police_accounts(&self) -> impl Iterator<Item = &SynthAccount> {
        self.accounts.iter().filter(|a| a.police)
    }

    /// The next post. Authors follow a skewed activity (a few accounts post a lot, most rarely);
    /// post times advance by about 20 ms per post (roughly a whole network's posting rate).
    pub fn next_post(&mut self) -> SynthPost {
        let n = self.next;
        self.next += 1;
        let rng = &mut self.rng;
        // Skewed activity: squaring a uniform draw favours low indices.
        let u: f64 = rng.gen();
        let author = ((u * u) * self.spec.accounts as f64) as usize % self.spec.accounts.max(1);
        let police = self.accounts[author].police;
        let risky = police && rng.gen_bool(self.spec.risky_share);
        let lang = if rng.gen_bool(self.spec.non_english_share) { pick(rng, OTHER_LANGS) } else { "en" };
        let target_len = post_length(rng);
        let text = compose(rng, lang, target_len, police, risky);
        let account = &self.accounts[author].account;
        let post = Post {
            platform: self.spec.platform.to_string(),
            platform_id: format!("p{n:010}"),
            author_id: account.platform_id.clone(),
            created_at: self.start + Duration::milliseconds((n * 20) as i64),
            text,
            alt_texts: if rng.gen_ratio(1, 20) { vec![alt_text(rng)] } else { vec![] },
            lang_hints: vec![lang.to_string()],
            url: None,
        };
        SynthPost { post, author, risky, lang }
    }
}

impl Iterator for Stream {
    type Item = SynthPost;
    fn next(&mut self) -> Option<SynthPost> {
        Some(self.next_post())
    }
}

/// A post length in characters: a mix that gives many short posts and a long tail.
fn post_length(rng: &mut StdRng) -> usize {
    let r: f64 = rng.gen();
    match r {
        r if r < 0.30 => rng.gen_range(8..60),
        r if r < 0.75 => rng.gen_range(60..180),
        r if r < 0.95 => rng.gen_range(180..300),
        _ => rng.gen_range(300..500),
    }
}

fn pick<'a, T: ?Sized>(rng: &mut StdRng, items: &'a [&'a T]) -> &'a T {
    items[rng.gen_range(0..items.len())]
}

fn make_account(rng: &mut StdRng, spec: &StreamSpec, i: usize) -> SynthAccount {
    let police = rng.gen_bool(spec.police_share);
    let first = pick(rng, FIRST_NAMES);
    let last = pick(rng, LAST_NAMES);
    let handle = format!("{}{}{}", first.to_lowercase(), last.to_lowercase(), i);
    let (display_name, bio) = if police {
        let force = pick(rng, FORCES);
        let number = rng.gen_range(100..9999);
        match rng.gen_range(0..4) {
            0 => (format!("PC {number} {first}"), format!("Response officer, {force} Police. Views my own.")),
            1 => (format!("{first} {last}"), format!("Police sergeant in {force}. Dad, runner, tea drinker.")),
            2 => (
                format!("{first} {last} | {force} Police"),
                format!("Neighbourhood team. Tweets are my own, not {force} Police."),
            ),
            _ => (format!("DC {first} {last}"), format!("Detective constable, CID. {force}. All views my own.")),
        }
    } else {
        let bio = match rng.gen_range(0..6) {
            0 => String::new(),
            1 => format!("{} from {}. {}", pick(rng, JOBS), pick(rng, PLACES), pick(rng, HOBBIES)),
            2 => format!("{} | {} | she/her", pick(rng, HOBBIES), pick(rng, JOBS)),
            3 => "写真とコーヒーが好きです。東京在住。".to_string(),
            4 => format!(
                "Fotógrafo e {} em {}",
                pick(rng, &["professor", "músico", "engenheiro"]),
                pick(rng, &["Lisboa", "São Paulo", "Porto"])
            ),
            _ => format!("{} fan. Opinions my own. {}", pick(rng, TEAMS), pick(rng, HOBBIES)),
        };
        (format!("{first} {last}"), bio)
    };
    let account = Account {
        platform: spec.platform.to_string(),
        platform_id: format!("did:plc:synth{i:08}"),
        handle: format!("{handle}.bsky.social"),
        display_name,
        bio,
        profile_url: None,
    };
    SynthAccount { account, police }
}

/// Text of about `len` characters in `lang`. Officers' posts sometimes carry identity talk;
/// risky posts carry one risky clause; a few ordinary posts carry bait words.
fn compose(rng: &mut StdRng, lang: &str, len: usize, police: bool, risky: bool) -> String {
    let words: &[&str] = match lang {
        "ja" => JA,
        "pt" => PT,
        "es" => ES,
        "de" => DE,
        "fr" => FR,
        "ko" => KO,
        "cy" => CY,
        _ => EN,
    };
    let cjk = matches!(lang, "ja");
    let mut text = String::with_capacity(len + 80);
    if risky {
        text.push_str(pick(rng, RISKY));
        text.push(' ');
    } else if police && lang == "en" && rng.gen_ratio(1, 8) {
        text.push_str(pick(rng, ON_DUTY));
        text.push(' ');
    } else if rng.gen_ratio(1, 100) {
        text.push_str(pick(rng, BAIT));
        text.push(' ');
    }
    let mut sentence = 0;
    while text.chars().count() < len {
        let w = pick(rng, words);
        if sentence == 0 && !cjk {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                text.extend(f.to_uppercase());
                text.push_str(c.as_str());
            }
        } else {
            text.push_str(w);
        }
        sentence += 1;
        if sentence > rng.gen_range(5..14) {
            text.push_str(if cjk { "。" } else { ". " });
            sentence = 0;
        } else if !cjk {
            text.push(' ');
        }
    }
    if rng.gen_ratio(1, 6) {
        text.push_str(pick(rng, TAILS));
    }
    text.trim_end().to_string()
}

fn alt_text(rng: &mut StdRng) -> String {
    format!("Photo of {} {}", pick(rng, &["a dog", "the sea", "a cake", "a crowd", "a street", "two people"]), pick(rng, PLACES))
}

const OTHER_LANGS: &[&str] = &["ja", "ja", "pt", "pt", "es", "de", "fr", "ko", "cy"];

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Alex", "Sam", "Jordan", "Priya", "Tom", "Gareth", "Siân", "Rhys", "Aisha", "Chloe", "Dan", "Emma", "Femi", "Hannah",
    "Iwan", "Jess", "Kofi", "Lowri", "Mo", "Niamh", "Owen", "Rosa", "Yuki", "João",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Jones", "Smith", "Davies", "Patel", "Williams", "Evans", "Khan", "Taylor", "Brown", "Hughes", "Okafor", "Murphy",
    "Price", "Wilson", "Thomas", "Tanaka", "Silva",
];
const FORCES: &[&str] =
    &["Kent", "Gwent", "Dyfed-Powys", "Merseyside", "Thames Valley", "Essex", "Avon and Somerset", "West Midlands"];
const JOBS: &[&str] = &["Teacher", "Nurse", "Developer", "Baker", "Student", "Engineer", "Designer", "Carpenter"];
const PLACES: &[&str] = &["Cardiff", "Leeds", "Bristol", "Swansea", "Glasgow", "Norwich", "York", "Bangor", "Hull"];
const HOBBIES: &[&str] = &["Climbing", "Birding", "Knitting", "Cycling", "Gaming", "Gardening", "Running", "Baking"];
const TEAMS: &[&str] = &["Cardiff City", "Leeds", "Everton", "Scarlets", "Ospreys", "Arsenal"];

#[rustfmt::skip]
const EN: &[&str] = &[
    "the", "a", "and", "of", "to", "in", "is", "it", "that", "for", "on", "with", "was", "this", "just", "so", "my",
    "really", "today", "morning", "weekend", "coffee", "train", "late", "again", "new", "book", "film", "garden",
    "weather", "rain", "sun", "walk", "dog", "cat", "kids", "dinner", "friends", "music", "gig", "match", "goal",
    "season", "work", "meeting", "project", "code", "release", "bug", "fixed", "finally", "brilliant", "awful",
    "lovely", "tired", "happy", "week", "holiday", "beach", "hill", "bike", "ride", "bread", "soup", "recipe",
    "thread", "photo", "thanks", "everyone", "anyone", "know", "think", "love", "hate", "watching", "reading",
    "listening", "playing", "making", "going", "back", "home", "city", "street", "shop", "market", "queue", "bus",
];
#[rustfmt::skip]
const PT: &[&str] = &[
    "o", "a", "de", "que", "e", "do", "da", "em", "um", "para", "com", "não", "uma", "os", "no", "se", "na", "por",
    "mais", "as", "dos", "como", "mas", "hoje", "amanhã", "café", "trabalho", "praia", "música", "jogo", "cidade",
    "amigos", "bom", "dia", "noite", "chuva", "sol", "livro", "filme", "gato", "cachorro", "feliz", "cansado",
];
#[rustfmt::skip]
const ES: &[&str] = &[
    "el", "la", "de", "que", "y", "en", "un", "ser", "se", "no", "por", "con", "su", "para", "como", "estar", "tener",
    "hoy", "mañana", "café", "trabajo", "playa", "música", "partido", "ciudad", "amigos", "buen", "día", "noche",
];
#[rustfmt::skip]
const DE: &[&str] = &[
    "der", "die", "und", "in", "den", "von", "zu", "das", "mit", "sich", "des", "auf", "für", "ist", "im", "nicht",
    "heute", "morgen", "Kaffee", "Arbeit", "Zug", "Verspätung", "Wetter", "Regen", "Buch", "Spiel", "Freunde",
];
#[rustfmt::skip]
const FR: &[&str] = &[
    "le", "de", "un", "être", "et", "à", "il", "avoir", "ne", "je", "son", "que", "se", "qui", "ce", "dans", "en",
    "aujourd'hui", "demain", "café", "travail", "plage", "musique", "match", "ville", "amis", "bonne", "journée",
];
#[rustfmt::skip]
const KO: &[&str] = &[
    "오늘", "정말", "날씨", "커피", "친구", "음악", "영화", "좋아요", "내일", "회사", "집", "고양이", "사진", "여행",
];
#[rustfmt::skip]
const JA: &[&str] = &[
    "今日", "は", "とても", "いい", "天気", "でした", "コーヒー", "を", "飲み", "ながら", "本", "読んで", "います", "猫",
    "が", "かわいい", "仕事", "終わった", "電車", "遅れて", "明日", "も", "頑張ろう", "写真", "撮りました", "東京", "雨",
];
#[rustfmt::skip]
const CY: &[&str] = &[
    "mae", "yn", "y", "ac", "i", "ar", "am", "dw", "heddiw", "bore", "da", "diolch", "pawb", "tywydd", "braf", "gwaith",
    "coffi", "llyfr", "gêm", "ffrindiau", "noson", "wych", "Caerdydd", "Abertawe", "hefyd", "iawn",
];
const TAILS: &[&str] =
    &[" 😂", " 🙌", " #caturday", " #photography", " (thread 1/3)", " https://example.org/x/abc", " @friend.bsky.social"];

/// Identity talk officers put in ordinary posts.
const ON_DUTY: &[&str] = &[
    "Long set of nights on response finally done.",
    "Proud of my shift today, custody was busy.",
    "Back on the beat after annual leave.",
    "Another early turn, briefing at six.",
    "Our new probationers were brilliant this week.",
];

/// Risky content of the kinds SPEC.md names (operational detail, personal data, drink, politics,
/// media, offensive language), written for the benchmark.
const RISKY: &[&str] = &[
    "Warrant going in at 22 Oak Road at 5am tomorrow, keep it quiet.",
    "Checked the reg on PNC for my neighbour, turns out it's her brother's car.",
    "The victim lives at flat 3 above the chip shop, poor lad.",
    "Off the record, any journalist who wants the real story on the raid, DM me.",
    "Absolutely steaming after the team do, cannot stand up.",
    "Everyone vote for them at the election, the other lot are a disgrace.",
    "Suspect in the stabbing is Kyle from the estate, everyone knows it.",
    "Free tickets from the nightclub owner again, perks of the job.",
];

/// Ordinary posts with words that look risky out of context.
const BAIT: &[&str] = &[
    "Vote for our bake-off entry in the village show!",
    "Drunk on sunshine today.",
    "The raid boss in this game is impossible.",
    "Journalist friends: the book launch is on Friday.",
    "This warrant officer character in the film is hilarious.",
];
