//! The command line: `--addr HOST:PORT`, `--store PATH`, and `--redis URL` (refused until scale-out exists).

use std::net::SocketAddr;
use std::path::PathBuf;

/// What the command line asks for.
#[derive(Debug)]
pub(crate) struct Args {
    /// Where to listen; port 0 picks a free port. Default `127.0.0.1:0`.
    pub(crate) addr: SocketAddr,
    /// The durable store's file (`--store`); mailboxes are in memory without it.
    pub(crate) store: Option<PathBuf>,
}

/// Why the command line was refused: the one line printed on stderr before exiting with code 2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct UsageError(pub(crate) String);

impl Args {
    /// Reads the arguments after the program name. `--flag value` and `--flag=value` are both accepted.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, UsageError> {
        let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut store = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| UsageError(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--addr" => {
                    let text = value()?;
                    addr = text.parse().map_err(|_| {
                        UsageError(format!(
                            "--addr: `{text}` is not an address like 127.0.0.1:0"
                        ))
                    })?;
                }
                "--store" => {
                    let path = value()?;
                    if path.is_empty() {
                        return Err(UsageError("--store needs a file path".into()));
                    }
                    store = Some(PathBuf::from(path));
                }
                // Scale-out is not part of this server yet.
                "--redis" => {
                    value()?;
                    return Err(UsageError(format!("{flag} is not supported yet")));
                }
                _ => return Err(UsageError(format!("unknown argument `{flag}`"))),
            }
        }
        Ok(Self { addr, store })
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, UsageError};

    fn parse(args: &[&str]) -> Result<Args, UsageError> {
        Args::parse(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn store_path() {
        assert_eq!(parse(&[]).unwrap().store, None);
        assert_eq!(
            parse(&["--store", "/tmp/c.redb"])
                .unwrap()
                .store
                .unwrap()
                .to_str(),
            Some("/tmp/c.redb")
        );
        assert_eq!(
            parse(&["--store="]).unwrap_err(),
            UsageError("--store needs a file path".into())
        );
    }

    #[test]
    fn addr_in_both_spellings_and_its_default() {
        assert_eq!(parse(&[]).unwrap().addr.to_string(), "127.0.0.1:0");
        assert_eq!(
            parse(&["--addr", "0.0.0.0:5000"]).unwrap().addr.to_string(),
            "0.0.0.0:5000"
        );
        assert_eq!(
            parse(&["--addr=[::1]:7"]).unwrap().addr.to_string(),
            "[::1]:7"
        );
    }

    #[test]
    fn bad_values_unknown_flags_and_later_features_are_refused() {
        for (args, error) in [
            (&["--addr"][..], "--addr needs a value"),
            (
                &["--addr", "localhost"][..],
                "--addr: `localhost` is not an address like 127.0.0.1:0",
            ),
            (&["--port", "1"][..], "unknown argument `--port`"),
            (&["--store"][..], "--store needs a value"),
            (&["--redis=redis://h"][..], "--redis is not supported yet"),
        ] {
            assert_eq!(parse(args).unwrap_err(), UsageError(error.to_owned()));
        }
    }
}
