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
        let names = || s.split(' ').filter(|s| !s.is_empty());
        // Counted first: the list is allocated once, at its final size.
        let mut items = Vec::with_capacity(names().count());
        items.extend(names().map(Box::from));
        Self::sorted(items)
    }

    fn sorted(mut items: Vec<Box<str>>) -> Self {
        items.sort_unstable();
        items.dedup();
        Self {
            items: items.into_boxed_slice(),
        }
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
        Self::sorted(iter.into_iter().map(Box::from).collect())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Scopes that imply others, opt-in (exact matching stays the default): with
/// `files:admin` implying `files:read` and `files:write`, a token granted
/// `files:admin` satisfies a requirement of `files:read`. Applied once, when
/// the token is verified, transitively; a 403 still names the scopes the
/// operation needs. See
/// [`TokenGuardBuilder::scope_hierarchy`](crate::TokenGuardBuilder::scope_hierarchy).
///
/// ```
/// use tokenguard::{ScopeHierarchy, Scopes};
/// let h = ScopeHierarchy::new()
///     .implies("files:admin", ["files:read", "files:write"])
///     .implies("files:write", ["files:read"]);
/// let granted = h.expand(&Scopes::from_space_separated("files:admin"));
/// assert!(granted.contains("files:read") && granted.contains("files:write"));
/// assert!(!h.expand(&Scopes::from_space_separated("files:read")).contains("files:write"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScopeHierarchy {
    // scope → the scopes it implies directly.
    implies: std::collections::BTreeMap<Box<str>, Vec<Box<str>>>,
}

impl ScopeHierarchy {
    /// No scope implies another.
    pub fn new() -> Self {
        Self::default()
    }

    /// `scope` implies each of `implied` (and whatever they imply).
    pub fn implies<'a>(mut self, scope: &str, implied: impl IntoIterator<Item = &'a str>) -> Self {
        self.implies
            .entry(scope.into())
            .or_default()
            .extend(implied.into_iter().map(Box::from));
        self
    }

    /// `granted` with every scope it implies added.
    pub fn expand(&self, granted: &Scopes) -> Scopes {
        if self.implies.is_empty() {
            return granted.clone();
        }
        let mut all: std::collections::BTreeSet<&str> = granted.iter().collect();
        let mut todo: Vec<&str> = all.iter().copied().collect();
        while let Some(scope) = todo.pop() {
            for implied in self.implies.get(scope).into_iter().flatten() {
                if all.insert(implied) {
                    todo.push(implied);
                }
            }
        }
        all.into_iter().collect()
    }

    /// Every name in it, for validation.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.implies
            .iter()
            .flat_map(|(k, v)| std::iter::once(&**k).chain(v.iter().map(|s| &**s)))
    }
}

/// One scope, as a type. Made by [`scopes!`](crate::scopes) or
/// [`scope!`](crate::scope).
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

/// A scope named by its literal at the use site: what
/// [`scope!`](crate::scope) expands to. The name is carried as its bytes in
/// const parameters (stable Rust has no `&str` const parameters), 64 bytes
/// at most.
#[doc(hidden)]
pub struct ScopeLiteral<
    const A: u128,
    const B: u128,
    const C: u128,
    const D: u128,
    const LEN: usize,
>;

/// The bytes of `s` from `16 * chunk`, packed into a `u128`.
#[doc(hidden)]
pub const fn scope_chunk(s: &str, chunk: usize) -> u128 {
    let bytes = s.as_bytes();
    assert!(
        crate::syntax::is_valid_scope_token(s),
        "a scope must be a non-empty RFC 6749 scope-token (no space, quote or backslash)"
    );
    assert!(
        bytes.len() <= 64,
        "scope! takes scopes of at most 64 bytes; use scopes! for longer ones"
    );
    let mut out = 0u128;
    let mut i = 0;
    while i < 16 {
        let at = chunk * 16 + i;
        if at < bytes.len() {
            #[allow(clippy::indexing_slicing, reason = "bounds checked on the line above")]
            let b = bytes[at];
            out |= (b as u128) << (8 * i);
        }
        i += 1;
    }
    out
}

#[allow(
    clippy::indexing_slicing,
    reason = "compile-time loop over 64 fixed indices"
)]
const fn unpack(parts: [u128; 4]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        out[i] = (parts[i / 16] >> (8 * (i % 16))) as u8;
        i += 1;
    }
    out
}

impl<const A: u128, const B: u128, const C: u128, const D: u128, const LEN: usize>
    ScopeLiteral<A, B, C, D, LEN>
{
    const BYTES: [u8; 64] = unpack([A, B, C, D]);
}

impl<const A: u128, const B: u128, const C: u128, const D: u128, const LEN: usize> Scope
    for ScopeLiteral<A, B, C, D, LEN>
{
    const NAME: &'static str = {
        let (name, _) = Self::BYTES.split_at(LEN);
        match std::str::from_utf8(name) {
            Ok(name) => name,
            Err(_) => panic!("not a scope"),
        }
    };
}

/// A scope named at the handler: `RequireScope<scope!("read:invoices")>`,
/// checked at compile time like [`scopes!`](crate::scopes) (at most 64
/// bytes).
///
/// ```
/// use tokenguard::{Scope, scope};
/// type Read = scope!("read:invoices");
/// assert_eq!(<Read as Scope>::NAME, "read:invoices");
/// async fn list(_: tokenguard::RequireScope<scope!("read:invoices")>) -> &'static str { "[]" }
/// # let _ = list;
/// ```
///
/// ```compile_fail
/// type Bad = tokenguard::scope!("has space");
/// let _ = <Bad as tokenguard::Scope>::NAME;
/// ```
#[macro_export]
macro_rules! scope {
    ($name:literal) => {
        $crate::__private::ScopeLiteral<
            { $crate::__private::scope_chunk($name, 0) },
            { $crate::__private::scope_chunk($name, 1) },
            { $crate::__private::scope_chunk($name, 2) },
            { $crate::__private::scope_chunk($name, 3) },
            { $name.len() },
        >
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::scopes! { A = "a"; B = "b:write"; C = "c"; }

    #[test]
    fn literal_scopes_round_trip() {
        assert_eq!(<crate::scope!("a") as Scope>::NAME, "a");
        assert_eq!(
            <crate::scope!("read:invoices") as Scope>::NAME,
            "read:invoices"
        );
        const LONG: &str = "https://api.example.com/scopes/invoices.read.all-of-them_0123456";
        assert_eq!(LONG.len(), 64);
        assert_eq!(<crate::scope!("https://api.example.com/scopes/invoices.read.all-of-them_0123456") as Scope>::NAME, LONG);
        let s = Scopes::from_space_separated("read:invoices");
        assert!(<(crate::scope!("read:invoices"),)>::is_satisfied(&s));
        assert!(!<crate::scope!("read:invoice") as ScopeRequirement>::is_satisfied(&s));
    }

    #[test]
    fn hierarchies_expand_transitively() {
        let h = ScopeHierarchy::new()
            .implies("admin", ["write"])
            .implies("write", ["read"])
            .implies("read", ["admin"]); // a cycle terminates
        let s = h.expand(&Scopes::from_space_separated("write"));
        assert_eq!(s.iter().collect::<Vec<_>>(), ["admin", "read", "write"]);
        let none = ScopeHierarchy::new();
        assert_eq!(none.expand(&Scopes::from_space_separated("x")).len(), 1);
    }

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
