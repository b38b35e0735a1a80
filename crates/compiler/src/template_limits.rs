//! Bounds on rendering a template that came from sources (an agent's
//! prompt, a BMAD rendered skill, an http tool's URL): a runaway loop or
//! a huge repeat ends in a render error, never in a hung process or
//! exhausted memory.

use minijinja::{Environment, Error, ErrorKind, Template};
use serde::Serialize;
use std::io;

/// Instructions one render may run: far beyond what any real prompt or
/// skill template needs.
const FUEL: u64 = 50_000_000;
/// Bytes one render may write.
const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Sets the instruction bound on every render of `env`.
pub fn bound(env: &mut Environment<'_>) {
    env.set_fuel(Some(FUEL));
}

/// Renders `template`, failing once its output passes 16 MiB.
pub fn render<S: Serialize>(template: &Template<'_, '_>, ctx: S) -> Result<String, Error> {
    let mut out = CappedBuffer::default();
    template.render_captured_to(ctx, &mut out).map_err(|e| {
        if e.kind() == ErrorKind::WriteFailure {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("the output passes {} MiB", MAX_OUTPUT_BYTES >> 20),
            )
        } else {
            e
        }
    })?;
    String::from_utf8(out.bytes).map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))
}

/// A buffer that refuses writes past [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct CappedBuffer {
    bytes: Vec<u8>,
}

impl io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_OUTPUT_BYTES {
            return Err(io::ErrorKind::FileTooLarge.into());
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded_render(source: &str) -> Result<String, Error> {
        let mut env = Environment::new();
        bound(&mut env);
        render(&env.template_from_str(source)?, ())
    }

    #[test]
    fn runaway_templates_end_in_an_error() {
        assert_eq!(bounded_render("{{ 1 + 1 }}").ok().as_deref(), Some("2"));
        let endless =
            "{% for i in range(100000) %}{% for j in range(100000) %}y{% endfor %}{% endfor %}";
        assert_eq!(
            bounded_render(endless).map_err(|e| e.kind()),
            Err(ErrorKind::OutOfFuel)
        );
        let huge = "{% set s = 'x' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}";
        let too_large = bounded_render(huge).map_err(|e| e.to_string());
        assert!(
            too_large
                .as_ref()
                .is_err_and(|e| e.contains("the output passes 16 MiB")),
            "{too_large:?}"
        );
    }
}
