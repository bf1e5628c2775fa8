//! Normalised records and the taxonomy shared by every stage.
//!
//! Owns: [`Account`] and [`Post`] (what every source produces after normalising), the identity
//! labels and post categories of `../shared/corpus/SPEC.md`, and severities. Holds no logic
//! beyond parsing and naming these values; stages decide what they mean.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A public profile as every source normalises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// `mastodon`, `bluesky`, `reddit`, `rss`, ...
    pub platform: String,
    /// The platform's stable id (Mastodon account id, Bluesky DID, Reddit username, feed URL).
    pub platform_id: String,
    pub handle: String,
    pub display_name: String,
    /// Plain text (HTML already converted); profile fields are appended as lines.
    pub bio: String,
    pub profile_url: Option<String>,
}

/// A public post as every source normalises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    pub platform: String,
    pub platform_id: String,
    /// `platform_id` of the author's [`Account`].
    pub author_id: String,
    pub created_at: DateTime<Utc>,
    /// Plain text (HTML already converted).
    pub text: String,
    /// Alt texts / descriptions of attached media.
    pub alt_texts: Vec<String>,
    /// Language tags the platform gave (ISO 639-1 or -3, as sent), most likely first.
    pub lang_hints: Vec<String>,
    pub url: Option<String>,
}

impl Post {
    /// Everything a reader sees of the post: text then each alt text on its own line.
    pub fn full_text(&self) -> std::borrow::Cow<'_, str> {
        if self.alt_texts.is_empty() {
            std::borrow::Cow::Borrowed(&self.text)
        } else {
            let mut s = self.text.clone();
            for alt in &self.alt_texts {
                s.push_str("\n[image: ");
                s.push_str(alt);
                s.push(']');
            }
            std::borrow::Cow::Owned(s)
        }
    }
}

/// Error for a label that is not part of the taxonomy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}` (expected one of: {expected})")]
pub struct UnknownLabel {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = UnknownLabel;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownLabel {
                        kind: $kind,
                        value: s.to_string(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

label_enum!(
    /// Who the account's owner is, relative to policing (SPEC.md "Identity labels").
    Identity, "identity", {
        Serving => "serving",
        Former => "former",
        Official => "official",
        Associated => "associated",
        None => "none",
    }
);

label_enum!(
    /// What a post's content puts at risk (SPEC.md "Post categories").
    Category, "category", {
        Operational => "operational",
        PersonalData => "personal_data",
        MediaContact => "media_contact",
        DiscriminatoryOffensive => "discriminatory_offensive",
        AlcoholDrugs => "alcohol_drugs",
        SexualNudity => "sexual_nudity",
        Political => "political",
        GiftsHospitality => "gifts_hospitality",
        SecondaryEmployment => "secondary_employment",
    }
);

label_enum!(
    /// How urgently PSD should look; ordered so that `max()` gives the most urgent.
    Severity, "severity", {
        Low => "low",
        Medium => "medium",
        High => "high",
    }
);

label_enum!(
    /// Languages that have rules. Detection picks which rule sets apply to a post.
    Lang, "language", {
        Eng => "eng",
        Cym => "cym",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_reject_unknown() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), *c);
        }
        let err = "gossip".parse::<Category>().unwrap_err();
        assert!(err.to_string().contains("gossip"));
        assert!(err.to_string().contains("personal_data"));
        assert!(Severity::High > Severity::Low);
    }

    #[test]
    fn full_text_appends_alt_texts() {
        let p = Post {
            platform: "mastodon".into(),
            platform_id: "1".into(),
            author_id: "a".into(),
            created_at: Utc::now(),
            text: "night out".into(),
            alt_texts: vec!["two people in uniform holding pints".into()],
            lang_hints: vec![],
            url: None,
        };
        assert_eq!(p.full_text(), "night out\n[image: two people in uniform holding pints]");
    }
}
