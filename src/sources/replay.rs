//! Replay source: reads `accounts.jsonl` and `posts.jsonl` in the corpus format of
//! `../shared/corpus/SPEC.md` (labels are ignored), so the demo, `eval` and tests run offline.
//!
//! Posts are streamed in file order, a page at a time; a page ends at an author boundary where
//! it can, so an author's posts are identified together. The cursor is the id of the last post
//! read. Accounts are indexed once (they are few) and attached to the pages of their posts.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{Page, Source, SourceError};
use crate::model::{Account, Post};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// Directory holding `accounts.jsonl` and `posts.jsonl`.
    pub dir: PathBuf,
    /// Most posts per page.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

fn default_page_size() -> usize {
    200
}

/// An account line of the corpus format; labels are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct CorpusAccount {
    pub id: String,
    pub platform: String,
    pub handle: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub bio: String,
}

/// A post line of the corpus format; labels are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct CorpusPost {
    pub id: String,
    pub account_id: String,
    pub platform: String,
    pub created_at: DateTime<Utc>,
    pub text: String,
    #[serde(default)]
    pub lang: Option<String>,
}

impl CorpusAccount {
    pub fn into_account(self) -> Account {
        Account {
            profile_url: None,
            platform: self.platform,
            platform_id: self.id,
            handle: self.handle,
            display_name: self.display_name,
            bio: self.bio,
        }
    }
}

impl CorpusPost {
    /// The corpus `lang` is a label, not something a platform sends, so it is not used as a
    /// hint: detection must work it out as it would in production.
    pub fn into_post(self) -> Post {
        Post {
            platform: self.platform,
            platform_id: self.id,
            author_id: self.account_id,
            created_at: self.created_at,
            text: self.text,
            alt_texts: vec![],
            lang_hints: vec![],
            url: None,
        }
    }
}

/// Read every account of a corpus directory, keyed by id. Bad lines are errors naming the line.
pub fn read_accounts(path: &Path) -> Result<HashMap<String, Account>, SourceError> {
    let mut out = HashMap::new();
    for_each_line(path, |lineno, line| {
        let acc: CorpusAccount = serde_json::from_str(line)
            .map_err(|e| SourceError::Malformed { location: format!("{}:{lineno}", path.display()), message: e.to_string() })?;
        out.insert(acc.id.clone(), acc.into_account());
        Ok(true)
    })?;
    Ok(out)
}

/// Call `f(line_number, line)` for each non-blank line until it returns `Ok(false)`.
pub fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<bool, SourceError>) -> Result<(), SourceError> {
    let io_err = |e| SourceError::Io { path: path.display().to_string(), source: e };
    let file = std::fs::File::open(path).map_err(io_err)?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err)?;
        if line.trim().is_empty() {
            continue;
        }
        if !f(i + 1, &line)? {
            break;
        }
    }
    Ok(())
}

pub struct ReplaySource {
    name: String,
    cfg: ReplayConfig,
    accounts: Option<HashMap<String, Account>>,
}

impl ReplaySource {
    pub fn new(name: String, cfg: ReplayConfig) -> Self {
        ReplaySource { name, cfg, accounts: None }
    }

    fn read_page(&self, cursor: Option<&str>) -> Result<Page, SourceError> {
        let accounts = self.accounts.as_ref().expect("accounts loaded");
        let path = self.cfg.dir.join("posts.jsonl");
        let mut page = Page::default();
        let mut past_cursor = cursor.is_none();
        let mut cursor_found = cursor.is_none();
        let mut reached_end = true;
        let page_size = self.cfg.page_size.max(1);
        for_each_line(&path, |lineno, line| {
            let location = || format!("{}:{lineno}", path.display());
            let post: CorpusPost = match serde_json::from_str(line) {
                Ok(p) => p,
                Err(e) => {
                    if past_cursor {
                        page.skipped.push(format!("{}: {e}", location()));
                    }
                    return Ok(true);
                }
            };
            if !past_cursor {
                if Some(post.id.as_str()) == cursor {
                    past_cursor = true;
                    cursor_found = true;
                }
                return Ok(true);
            }
            // End the page at an author boundary once it is full (or at twice the size for an
            // author with very many posts, to keep memory bounded).
            if let Some(last) = page.posts.last() {
                let full = page.posts.len() >= page_size && last.author_id != post.account_id;
                if full || page.posts.len() >= page_size * 2 {
                    reached_end = false;
                    return Ok(false);
                }
            }
            if !accounts.contains_key(&post.account_id) {
                page.skipped.push(format!("{}: post {} has unknown account_id {}", location(), post.id, post.account_id));
                page.cursor = Some(post.id);
                return Ok(true);
            }
            page.cursor = Some(post.id.clone());
            page.posts.push(post.into_post());
            Ok(true)
        })?;
        if !cursor_found {
            return Err(SourceError::BadCursor {
                cursor: cursor.unwrap_or_default().to_string(),
                message: format!("no post with that id in {}", path.display()),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for p in &page.posts {
            if seen.insert(p.author_id.as_str()) {
                page.accounts.push(accounts[&p.author_id].clone());
            }
        }
        page.done = reached_end;
        Ok(page)
    }
}

#[async_trait]
impl Source for ReplaySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn next_page(&mut self, cursor: Option<&str>) -> Result<Page, SourceError> {
        if self.accounts.is_none() {
            self.accounts = Some(read_accounts(&self.cfg.dir.join("accounts.jsonl"))?);
        }
        // Files are local and small per page; reading synchronously inside the task is fine
        // for a replay, and keeps this source simple.
        self.read_page(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_corpus(dir: &Path, posts: &[(&str, &str)]) {
        std::fs::write(
            dir.join("accounts.jsonl"),
            "{\"id\":\"a1\",\"platform\":\"mastodon\",\"handle\":\"@x@m.example\",\"display_name\":\"X\",\"bio\":\"PC\"}\n\
             {\"id\":\"a2\",\"platform\":\"mastodon\",\"handle\":\"@y@m.example\",\"display_name\":\"Y\",\"bio\":\"\"}\n",
        )
        .unwrap();
        let mut s = String::new();
        for (id, acc) in posts {
            s.push_str(&format!(
                "{{\"id\":\"{id}\",\"account_id\":\"{acc}\",\"platform\":\"mastodon\",\"created_at\":\"2026-01-01T00:00:00Z\",\"text\":\"t {id}\"}}\n"
            ));
        }
        std::fs::write(dir.join("posts.jsonl"), s).unwrap();
    }

    async fn all_pages(src: &mut ReplaySource) -> Vec<Page> {
        let mut cursor: Option<String> = None;
        let mut pages = vec![];
        loop {
            let page = src.next_page(cursor.as_deref()).await.unwrap();
            let done = page.done;
            if page.cursor.is_some() {
                cursor = page.cursor.clone();
            }
            pages.push(page);
            if done {
                return pages;
            }
        }
    }

    #[tokio::test]
    async fn pages_end_at_author_boundaries_and_resume_from_cursor() {
        let dir = tempfile::tempdir().unwrap();
        write_corpus(dir.path(), &[("p1", "a1"), ("p2", "a1"), ("p3", "a1"), ("p4", "a2"), ("p5", "a2")]);
        let mut src = ReplaySource::new("r".into(), ReplayConfig { dir: dir.path().into(), page_size: 2 });
        let pages = all_pages(&mut src).await;
        let ids: Vec<Vec<&str>> = pages.iter().map(|p| p.posts.iter().map(|p| p.platform_id.as_str()).collect()).collect();
        assert_eq!(ids, vec![vec!["p1", "p2", "p3"], vec!["p4", "p5"]]);
        assert_eq!(pages[0].accounts.len(), 1);
        assert_eq!(pages[1].cursor.as_deref(), Some("p5"));
        // Resuming after the last post yields an empty, finished page.
        let tail = src.next_page(Some("p5")).await.unwrap();
        assert!(tail.posts.is_empty() && tail.done);
        // A cursor the file does not contain is an error, not a silent re-read.
        assert!(matches!(src.next_page(Some("p9")).await, Err(SourceError::BadCursor { .. })));
    }

    #[tokio::test]
    async fn malformed_lines_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        write_corpus(dir.path(), &[("p1", "a1"), ("p2", "zz")]);
        let mut posts = std::fs::read_to_string(dir.path().join("posts.jsonl")).unwrap();
        posts.push_str("{not json\n");
        std::fs::write(dir.path().join("posts.jsonl"), posts).unwrap();
        let mut src = ReplaySource::new("r".into(), ReplayConfig { dir: dir.path().into(), page_size: 10 });
        let page = src.next_page(None).await.unwrap();
        assert_eq!(page.posts.len(), 1);
        assert_eq!(page.skipped.len(), 2, "{:?}", page.skipped);
        assert!(page.skipped[0].contains("unknown account_id zz"));
        assert!(page.skipped[1].contains("posts.jsonl:3"));
    }
}
