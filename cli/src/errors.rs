//! An error and every source below it on one line, as the binaries print a failure.

/// `what: why: deeper why` ("transport error: tcp connect error: Connection refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|layer| layer as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn every_cause_follows_its_error_in_order() {
        let cases = [
            (Layer("refused", None), "refused"),
            (
                Layer(
                    "transport error",
                    Some(Box::new(Layer("tcp connect error", Some(Box::new(Layer("Connection refused", None)))))),
                ),
                "transport error: tcp connect error: Connection refused",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error_chain(&error), expected);
        }
    }
}
