//! On/off flags and their environment variables: 1, true, yes or on turn a flag on; 0, false, no,
//! off or empty leave it off (any case), and a wrong value is an error naming the variable.

use std::ffi::OsStr;

use clap::builder::TypedValueParser;

/// The spelling of on and off a variable may use; `None` for anything else.
pub fn on_off(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "" | "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The value parser of every on/off flag (`action = ArgAction::SetTrue, value_parser = EnvBool`).
/// On the command line such a flag takes no value, so what reaches this is its variable. clap's
/// own bool parser takes only true and false, and its errors name the flag, not the variable that
/// was wrong.
#[derive(Debug, Clone, Copy)]
pub struct EnvBool;

impl TypedValueParser for EnvBool {
    type Value = bool;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<bool, clap::Error> {
        let text = value.to_string_lossy();
        on_off(&text).ok_or_else(|| {
            let variable = arg.and_then(clap::Arg::get_env).map(OsStr::to_string_lossy);
            let flag = arg.and_then(clap::Arg::get_long).unwrap_or_default();
            let message = format!(
                "{}={text:?} is neither on nor off: set 1, true, yes or on to turn --{flag} on, \
                 and 0, false, no or off (or unset it) to leave it off\n",
                variable.as_deref().unwrap_or("the variable")
            );
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, message).with_cmd(cmd)
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::{ArgAction, CommandFactory, Parser};

    use super::*;

    #[test]
    fn each_spelling_reads_as_on_off_or_nothing() {
        let cases = [
            ("1", Some(true)),
            ("true", Some(true)),
            ("YES", Some(true)),
            (" on ", Some(true)),
            ("0", Some(false)),
            ("false", Some(false)),
            ("No", Some(false)),
            ("off", Some(false)),
            ("", Some(false)),
            ("maybe", None),
            ("2", None),
            ("enabled", None),
        ];
        for (text, expected) in cases {
            assert_eq!(on_off(text), expected, "{text:?}");
        }
    }

    #[derive(Parser)]
    struct Flags {
        #[arg(long, env = "BAKERY_TEST_SWITCH", action = ArgAction::SetTrue, value_parser = EnvBool)]
        switch: bool,
    }

    #[test]
    fn a_wrong_value_names_its_variable_and_its_flag() {
        let command = Flags::command();
        let arg = command.get_arguments().find(|a| a.get_id() == "switch").unwrap();
        assert!(EnvBool.parse_ref(&command, Some(arg), OsStr::new("yes")).unwrap());
        let error = EnvBool.parse_ref(&command, Some(arg), OsStr::new("maybe")).unwrap_err().to_string();
        assert!(error.contains("BAKERY_TEST_SWITCH=\"maybe\"") && error.contains("--switch"), "{error}");
    }
}
