//! Scopes: the parsed set a token grants, marker types for the scopes a
//! handler requires, and where scopes come from in the claims.
//!
//! Matching is exact and case-sensitive: `read:invoices` is granted only by
//! `read:invoices`, never by `read`, `read:*`, `READ:INVOICES` or `*`.
//!
//! ```
//! use tokenguard::{scopes, Scopes, ScopeRequirement, AnyOf};
//!
//! scopes! {
//!     /// Read invoices.
//!     pub ReadInvoices = "read:invoices";
//!     /// Create invoices.
//!     pub WriteInvoices = "write:invoices";
//! }
//!
//! let granted = Scopes::from_space_separated("openid read:invoices");
//! assert!(ReadInvoices::is_satisfied(&granted));
//! assert!(!<(ReadInvoices, WriteInvoices)>::is_satisfied(&granted));
//! assert!(AnyOf::<(ReadInvoices, WriteInvoices)>::is_satisfied(&granted));
//! ```

use std::fmt;
use std::marker::PhantomData;

/// The set of scopes a verified token grants. Parsed once per token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    // Sorted and deduplicated, for binary search.
    items: Box<[Box<str>]>,
}

impl Scopes {
    /// Parses a space-separated `scope` value (RFC 6749 §3.3). Empty items from
    /// repeated spaces are ignored.
    pub fn from_space_separated(s: &str) -> Self {
        Self::from_iter(s.split(' ').filter(|s| !s.is_empty()))
    }

    /// Whether `scope` is granted (exact, case-sensitive).
    pub fn contains(&self, scope: &str) -> bool {
        self.items.binary_search_by(|s| (**s).cmp(scope)).is_ok()
    }

    /// The granted scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|s| &**s)
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<'a> FromIterator<&'a str> for Scopes {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut items: Vec<Box<str>> = iter.into_iter().map(Box::from).collect();
        items.sort_unstable();
        items.dedup();
        Self {
            items: items.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// One scope, as a type. Made by [`scopes!`](crate::scopes).
pub trait Scope: Send + Sync + 'static {
    /// The scope's name, as it appears in tokens.
    const NAME: &'static str;
}

/// What a handler requires of a token's scopes: one [`Scope`], a tuple of
/// scopes (all of them), or [`AnyOf`] a tuple (at least one).
pub trait ScopeRequirement: Send + Sync + 'static {
    /// Whether `granted` satisfies the requirement.
    fn is_satisfied(granted: &Scopes) -> bool;
    /// Appends the required scope names, space-separated, for the
    /// `scope` attribute of the `insufficient_scope` challenge.
    fn describe(out: &mut String);

    /// The required scope names, space-separated.
    fn description() -> String {
        let mut s = String::new();
        Self::describe(&mut s);
        s
    }
}

impl<S: Scope> ScopeRequirement for S {
    fn is_satisfied(granted: &Scopes) -> bool {
        granted.contains(S::NAME)
    }
    fn describe(out: &mut String) {
        push_name(out, S::NAME);
    }
}

fn push_name(out: &mut String, name: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(name);
}

/// Any one of the scopes in the tuple `T` suffices.
///
/// The challenge's `scope` attribute then lists every alternative.
pub struct AnyOf<T>(PhantomData<fn() -> T>);

/// Tuples of scopes usable inside [`AnyOf`].
pub trait ScopeTuple: Send + Sync + 'static {
    /// Whether at least one scope of the tuple is granted.
    fn any(granted: &Scopes) -> bool;
    /// Appends all names.
    fn describe_all(out: &mut String);
}

impl<T: ScopeTuple> ScopeRequirement for AnyOf<T> {
    fn is_satisfied(granted: &Scopes) -> bool {
        T::any(granted)
    }
    fn describe(out: &mut String) {
        T::describe_all(out);
    }
}

macro_rules! tuple_impls {
    ($($name:ident),+) => {
        impl<$($name: ScopeRequirement),+> ScopeRequirement for ($($name,)+) {
            fn is_satisfied(granted: &Scopes) -> bool {
                $($name::is_satisfied(granted))&&+
            }
            fn describe(out: &mut String) {
                $($name::describe(out);)+
            }
        }
        impl<$($name: ScopeRequirement),+> ScopeTuple for ($($name,)+) {
            fn any(granted: &Scopes) -> bool {
                $($name::is_satisfied(granted))||+
            }
            fn describe_all(out: &mut String) {
                $($name::describe(out);)+
            }
        }
    };
}
tuple_impls!(A);
tuple_impls!(A, B);
tuple_impls!(A, B, C);
tuple_impls!(A, B, C, D);
tuple_impls!(A, B, C, D, E);
tuple_impls!(A, B, C, D, E, F);
tuple_impls!(A, B, C, D, E, F, G);
tuple_impls!(A, B, C, D, E, F, G, H);

/// Declares scope marker types for [`RequireScope`](crate::RequireScope).
///
/// Each name must be a valid RFC 6749 scope-token (printable ASCII without
/// space, `"` or `\`); anything else fails to compile.
///
/// ```
/// tokenguard::scopes! {
///     /// Read invoices.
///     pub ReadInvoices = "read:invoices";
///     pub(crate) Admin = "admin";
/// }
/// use tokenguard::Scope;
/// assert_eq!(ReadInvoices::NAME, "read:invoices");
/// ```
///
/// ```compile_fail
/// tokenguard::scopes! { pub Bad = "has space"; }
/// ```
#[macro_export]
macro_rules! scopes {
    ($($(#[$meta:meta])* $vis:vis $name:ident = $value:literal;)+) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
            $vis struct $name;
            impl $crate::Scope for $name {
                const NAME: &'static str = $value;
            }
            const _: () = assert!(
                $crate::__private::is_valid_scope_token($value),
                "a scope must be a non-empty RFC 6749 scope-token (no space, quote or backslash)"
            );
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::scopes! { A = "a"; B = "b:write"; C = "c"; }

    #[test]
    fn matching_is_exact() {
        let s = Scopes::from_space_separated("a  b:write read:*");
        assert!(s.contains("a"));
        assert!(s.contains("b:write"));
        assert!(!s.contains("b"));
        assert!(!s.contains("A"));
        assert!(!s.contains("read:x"));
        assert_eq!(s.len(), 3);
        assert!(<(A, B)>::is_satisfied(&s));
        assert!(!<(A, C)>::is_satisfied(&s));
        assert!(AnyOf::<(C, A)>::is_satisfied(&s));
        assert!(!AnyOf::<(C,)>::is_satisfied(&s));
        assert_eq!(<(A, B)>::description(), "a b:write");
    }

    #[test]
    fn scope_token_charset() {
        use crate::syntax::is_valid_scope_token;
        assert!(is_valid_scope_token("read:invoices"));
        assert!(is_valid_scope_token("https://api.example.com/x.read"));
        assert!(!is_valid_scope_token(""));
        assert!(!is_valid_scope_token("a b"));
        assert!(!is_valid_scope_token("a\"b"));
        assert!(!is_valid_scope_token("a\\b"));
        assert!(!is_valid_scope_token("é"));
    }
}
