//! Identity: the access token *is* the user id.

/// The user id for a connection that presented `token`: no token is an anonymous connection (`None`); a token
/// of 1 to 64 characters from `[A-Za-z0-9_-]` is the user id; any other token is refused (HTTP 401).
pub(crate) fn user_of(token: Option<&str>) -> Result<Option<String>, String> {
    match token {
        None => Ok(None),
        Some(token) if is_user_id(token) => Ok(Some(token.to_owned())),
        Some(_) => Err("the access token is not a user id ([A-Za-z0-9_-]{1,64})".to_owned()),
    }
}

fn is_user_id(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::user_of;

    #[test]
    fn tokens_that_are_user_ids_and_tokens_that_are_not() {
        assert_eq!(user_of(None), Ok(None));
        let longest = "a".repeat(64);
        for token in ["alice", "A-b_9", longest.as_str()] {
            assert_eq!(user_of(Some(token)), Ok(Some(token.to_owned())));
        }
        let too_long = "a".repeat(65);
        for token in ["", "al ice", "alice!", "é", too_long.as_str()] {
            assert!(user_of(Some(token)).is_err(), "{token:?} was accepted");
        }
    }
}
