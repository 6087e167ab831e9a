//! A reader for the WordNet 3.0 database files (Debian's `wordnet-base`), used for one
//! thing: the synonyms a [`EditKind::Synonym`](super::edits::EditKind::Synonym) edit may
//! write in place of a word.
//!
//! Format (`wndb(5)`): each of `index.{noun,verb,adj,adv}` and `data.{noun,verb,adj,adv}`
//! opens with a licence prolog whose lines start with two spaces. An index line is
//! `lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...`; a
//! synset offset is the byte at which that synset's line starts in the data file of the same
//! part of speech, and a data line is `offset lex_filenum ss_type w_cnt word lex_id ...`
//! with `w_cnt` in hex.
//!
//! A lemma's synonyms are the other words of its first [`WordNet::SYNSETS_PER_LEMMA`]
//! synsets of each part of speech (noun, verb, adjective, adverb, each in file order, i.e.
//! most frequent sense first), lowercased, deduplicated, single words only (a multi-word
//! lemma such as `hard_cash` is dropped, since writing it would add words). Later senses
//! are left out on purpose: "bank" as a river bank is not a synonym an attacker can use for
//! "bank" in a spam text without changing what it says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{DataError, Error, Result};

/// The parts of speech, in the order their synonyms are listed.
const PARTS: [&str; 4] = ["noun", "verb", "adj", "adv"];

/// Install hint in every error about missing or unreadable WordNet files.
const HINT: &str = "the synonym attack needs WordNet 3.0: `apt-get install -y wordnet-base` \
     (files in /usr/share/wordnet), or set ADVTRAIN_WORDNET to a directory holding \
     index.{noun,verb,adj,adv} and data.{noun,verb,adj,adv}";

/// Synonyms of single-word lemmas, read once from a WordNet directory.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WordNet {
    synonyms: HashMap<String, Vec<String>>,
    dir: PathBuf,
}

impl std::fmt::Debug for WordNet {
    /// The directory and size only: the map holds tens of thousands of lemmas.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordNet")
            .field("dir", &self.dir)
            .field("lemmas", &self.synonyms.len())
            .finish()
    }
}

impl WordNet {
    /// The environment variable naming the WordNet directory, so a machine without the
    /// Debian package (or a test) can point at its own copy.
    pub const ENV: &'static str = "ADVTRAIN_WORDNET";
    /// Where Debian's `wordnet-base` installs the database.
    pub const DEFAULT_DIR: &'static str = "/usr/share/wordnet";
    /// Synsets read per lemma and part of speech: the most frequent senses only, so a
    /// synonym rarely changes what the text means.
    pub const SYNSETS_PER_LEMMA: usize = 3;

    /// The directory [`WordNet::system`] reads: `$ADVTRAIN_WORDNET`, else
    /// [`WordNet::DEFAULT_DIR`].
    pub fn default_dir() -> PathBuf {
        std::env::var_os(Self::ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(Self::DEFAULT_DIR))
    }

    /// Reads the eight index and data files of `dir`. Fails, naming the file, when one is
    /// missing, unreadable, or an index entry points at no synset of its data file.
    pub fn load(dir: impl AsRef<Path>) -> Result<WordNet> {
        let dir = dir.as_ref();
        let mut synonyms: HashMap<String, Vec<String>> = HashMap::new();
        for part in PARTS {
            let index_path = dir.join(format!("index.{part}"));
            let data_path = dir.join(format!("data.{part}"));
            let index = read(&index_path)?;
            let data = read(&data_path)?;
            let files = Files {
                index: &index_path,
                data: &data_path,
                bytes: &data,
            };
            add_part(&files, &index, &mut synonyms)?;
        }
        Ok(WordNet {
            synonyms,
            dir: dir.to_path_buf(),
        })
    }

    /// The WordNet of [`WordNet::default_dir`], loaded on first use and kept for the life of
    /// the process (loading parses about 30 MB). A failure is kept too, so every caller
    /// gets the same error (naming the file and how to install WordNet) without re-reading
    /// the files.
    pub fn system() -> Result<&'static WordNet> {
        static SYSTEM: OnceLock<std::result::Result<WordNet, String>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| WordNet::load(Self::default_dir()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::config(e.clone()))
    }

    /// Synonyms of `word` (looked up lowercased), most frequent sense first; empty for a word
    /// WordNet does not know.
    pub fn synonyms(&self, word: &str) -> &[String] {
        self.synonyms
            .get(&word.to_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// Number of lemmas with at least one synonym.
    pub fn len(&self) -> usize {
        self.synonyms.len()
    }

    /// Whether no lemma has a synonym (an empty or prolog-only database).
    pub fn is_empty(&self) -> bool {
        self.synonyms.is_empty()
    }

    /// The directory this was loaded from, for records and messages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// One part of speech's files: paths for messages, the data file's bytes for lookups.
struct Files<'a> {
    index: &'a Path,
    data: &'a Path,
    bytes: &'a [u8],
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Data(DataError::Missing {
                path: path.to_path_buf(),
                hint: HINT.into(),
            })
        } else {
            Error::io(path, e)
        }
    })
}

fn invalid(path: &Path, line: usize, message: impl std::fmt::Display) -> Error {
    Error::Data(DataError::Invalid {
        path: path.to_path_buf(),
        message: format!("line {line}: {message}; {HINT}"),
    })
}

/// Adds the synonyms of every single-word lemma of one index file.
fn add_part(
    files: &Files<'_>,
    index: &[u8],
    synonyms: &mut HashMap<String, Vec<String>>,
) -> Result<()> {
    let text = String::from_utf8_lossy(index);
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        let (lemma, offsets) =
            parse_index_line(line).map_err(|m| invalid(files.index, n + 1, m))?;
        if lemma.contains('_') {
            continue;
        }
        let lemma = lemma.to_lowercase();
        for offset in offsets.into_iter().take(WordNet::SYNSETS_PER_LEMMA) {
            let words = synset_words(files, offset)?;
            let entry = synonyms.entry(lemma.clone()).or_default();
            for w in words {
                if w != lemma && !w.contains('_') && !entry.contains(&w) {
                    entry.push(w);
                }
            }
        }
    }
    synonyms.retain(|_, v| !v.is_empty());
    Ok(())
}

/// The lemma and synset offsets of an index line.
fn parse_index_line(line: &str) -> std::result::Result<(&str, Vec<usize>), String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize, what: &str| -> std::result::Result<usize, String> {
        f.get(i)
            .ok_or_else(|| format!("index line ends before its {what}"))?
            .parse::<usize>()
            .map_err(|_| format!("{what} {:?} is not a number", f[i]))
    };
    let synset_cnt = num(2, "synset_cnt")?;
    let p_cnt = num(3, "p_cnt")?;
    let first = 4 + p_cnt + 2;
    let offsets = (first..first + synset_cnt)
        .map(|i| num(i, "synset_offset"))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((f[0], offsets))
}

/// The words (lowercased, adjective markers such as `(a)` removed) of the synset at byte
/// `offset` of the data file.
fn synset_words(files: &Files<'_>, offset: usize) -> Result<Vec<String>> {
    let bad = |m: String| {
        Error::Data(DataError::Invalid {
            path: files.data.to_path_buf(),
            message: format!("synset at byte {offset}: {m}; {HINT}"),
        })
    };
    let rest = files
        .bytes
        .get(offset..)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            bad(format!(
                "past the end of the file ({} bytes)",
                files.bytes.len()
            ))
        })?;
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = String::from_utf8_lossy(&rest[..end]);
    parse_data_line(&line, offset).map_err(bad)
}

fn parse_data_line(line: &str, offset: usize) -> std::result::Result<Vec<String>, String> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.first().and_then(|s| s.parse::<usize>().ok()) != Some(offset) {
        return Err("the line there does not start with that offset".into());
    }
    let w_cnt = f
        .get(3)
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or("no hexadecimal w_cnt in the fourth field")?;
    (0..w_cnt)
        .map(|k| {
            let w = f.get(4 + 2 * k).ok_or("fewer words than w_cnt says")?;
            let w = w.split('(').next().unwrap_or(w);
            Ok(w.to_lowercase())
        })
        .collect()
}
