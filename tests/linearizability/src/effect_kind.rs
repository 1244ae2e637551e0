//! What an operation can do to the state, as far as the search needs to know.

/// How an operation changes the state wherever it is legal, as declared by
/// [`Model::effect_kind`](crate::Model::effect_kind).
///
/// The search uses it to skip work that cannot matter: a read is placed as soon as it fits,
/// without trying other orders first; a timed-out read is dropped; a timed-out write is never
/// tried right after another timed-out operation, whose effect it would hide.
/// [`EffectKind::DependsOnState`] is always a correct answer; the others make the search faster
/// and must hold for every state, or the checker gives wrong answers.
///
/// # Example
///
/// ```
/// use ha_linearizability::{EffectKind, Input, Model, Output, RegisterModel};
///
/// let kind = |input: Input, output: Option<Output>| RegisterModel.effect_kind(&input, output.as_ref());
/// assert_eq!(kind(Input::Read, Some(Output::not_found())), EffectKind::ReadOnly);
/// assert_eq!(kind(Input::cas("a", "b"), Some(Output::CasFailed)), EffectKind::ReadOnly);
/// assert_eq!(kind(Input::write("a"), None), EffectKind::Overwrite);
/// assert_eq!(kind(Input::cas("a", "b"), Some(Output::CasOk)), EffectKind::Overwrite);
/// assert_eq!(kind(Input::cas("a", "b"), None), EffectKind::DependsOnState);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EffectKind {
    /// Wherever the operation is legal, it leaves the state unchanged: a read, a failed
    /// compare-and-swap. Formally, `step(s, input, output)` is `None` or `Some(s)` for every `s`.
    ReadOnly,
    /// Wherever the operation is legal, it leaves the same state, whatever the state before: a
    /// write, a delete, a successful compare-and-swap. Formally, there is one `x` such that
    /// `step(s, input, output)` is `None` or `Some(x)` for every `s`; and if `output` is `None`,
    /// it is `Some(x)` for every `s`.
    Overwrite,
    /// Anything else, like a compare-and-swap whose outcome is unknown.
    DependsOnState,
}
