//! The pure parts of search: the FTS5 expression a search term becomes,
//! the `next_batch` token, and word-prefix matching for the user
//! directory.

use crate::storage::search::SearchOrder;

/// The indexed keys of an event (client-server API, "Server Side
/// Search": `keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKey {
    Body,
    Name,
    Topic,
}

impl SearchKey {
    /// The column of the index that holds the key.
    fn column(self) -> &'static str {
        match self {
            SearchKey::Body => "body",
            SearchKey::Name => "name",
            SearchKey::Topic => "topic",
        }
    }
}

/// The words of a search term, lower-cased: what the index matches and
/// what clients are told to highlight.
pub fn words(term: &str) -> Vec<String> {
    term.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// The FTS5 expression that finds events holding every word of `term`
/// under one of `keys` (every key when empty), or `None` when the term
/// has no words. Each word is a quoted string, so nothing a user types is
/// read as FTS5 syntax.
pub fn match_expression(term: &str, keys: &[SearchKey]) -> Option<String> {
    let words = words(term);
    if words.is_empty() {
        return None;
    }
    let phrase: Vec<String> = words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
    let phrase = phrase.join(" ");
    if keys.is_empty() {
        return Some(phrase);
    }
    let mut columns: Vec<&str> = keys.iter().map(|k| k.column()).collect();
    columns.dedup();
    Some(format!("{{{}}} : ({phrase})", columns.join(" ")))
}

/// Where the next page of a search starts: after `offset` results in rank
/// order, or below a stream position in recent order (so new messages do
/// not shift the pages of a client paging back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchToken {
    Offset(usize),
    Before(i64),
}

impl SearchToken {
    pub fn parse(token: &str, order: SearchOrder) -> Option<Self> {
        match (order, token.split_at_checked(1)?) {
            (SearchOrder::Rank, ("o", n)) => n.parse().ok().map(SearchToken::Offset),
            (SearchOrder::Recent, ("b", n)) => n.parse().ok().map(SearchToken::Before),
            _ => None,
        }
    }
}

impl std::fmt::Display for SearchToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SearchToken::Offset(n) => write!(f, "o{n}"),
            SearchToken::Before(n) => write!(f, "b{n}"),
        }
    }
}

/// Whether every word of `term` starts a word of the user's display name
/// or user id (`@alice.smith:example.org` has the words `alice`, `smith`,
/// `example`, `org`). Case is ignored.
pub fn matches_word_prefix(term: &[String], user_id: &str, displayname: Option<&str>) -> bool {
    let mut candidates = words(user_id);
    candidates.extend(displayname.map(words).unwrap_or_default());
    term.iter().all(|t| candidates.iter().any(|w| w.starts_with(t.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_become_quoted_words_under_their_keys() {
        assert_eq!(match_expression("Hello, World", &[]).as_deref(), Some("\"hello\" \"world\""));
        assert_eq!(
            match_expression("café", &[SearchKey::Name, SearchKey::Topic]).as_deref(),
            Some("{name topic} : (\"café\")")
        );
        // FTS5 syntax is only ever words.
        assert_eq!(match_expression("a OR b*", &[]).as_deref(), Some("\"a\" \"or\" \"b\""));
        assert_eq!(match_expression(" ;- ", &[]), None);
    }

    #[test]
    fn tokens_round_trip_for_their_order_only() {
        let offset = SearchToken::Offset(20);
        assert_eq!(SearchToken::parse(&offset.to_string(), SearchOrder::Rank), Some(offset));
        assert_eq!(SearchToken::parse(&offset.to_string(), SearchOrder::Recent), None);
        let before = SearchToken::Before(-3);
        assert_eq!(SearchToken::parse(&before.to_string(), SearchOrder::Recent), Some(before));
        assert_eq!(SearchToken::parse("", SearchOrder::Rank), None);
        assert_eq!(SearchToken::parse("ox", SearchOrder::Rank), None);
    }

    #[test]
    fn directory_matches_prefixes_of_words() {
        let term = words("ali SMI");
        assert!(matches_word_prefix(&term, "@x:example.org", Some("Alice Smith")));
        assert!(matches_word_prefix(&words("smith"), "@alice.smith:example.org", None));
        assert!(!matches_word_prefix(&words("lice"), "@alice:example.org", Some("Alice")));
        assert!(!matches_word_prefix(&term, "@alice:example.org", Some("Alice")));
    }
}
