// SPDX-License-Identifier: Apache-2.0
//! Command-line helpers shared by the subcommands.

/// The value after `flag` at `args[*i]` (advances `i`).
pub fn value<'a>(args: &'a [String], i: &mut usize, flag: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{flag} needs a value"))
}

/// `s` as a number, or an error naming `flag`.
pub fn number<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{flag}: '{s}' is not a valid number"))
}
