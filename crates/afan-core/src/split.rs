//! The one contract a network signs to take part in A-FAN: it can be cut at named points.

use burn::tensor::Tensor;

/// A resolved cut of a model, obtained from [`SplitModel::split_point`].
///
/// Names are resolved once, up front, so an unknown name is an error at configuration time and the
/// hot loop only carries an index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SplitPoint {
    /// Position in the model's own ordering of cut points (0 = earliest).
    pub index: usize,
    /// Canonical name, after the torchvision module the cut follows (`layer3`, `layer2.1`).
    pub name: String,
}

/// Why a split point could not be resolved.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// The name matches no cut point of the model.
    #[error("unknown split point `{name}` for {model}; valid points: {}", valid.join(", "))]
    UnknownPoint {
        /// The name that was asked for.
        name: String,
        /// The model it was asked of.
        model: String,
        /// Every canonical name the model accepts.
        valid: Vec<String>,
    },
}

/// A network that can be run up to a named point (`head`) and from that point on (`tail`).
///
/// Implementations must guarantee `forward_from(forward_to(x, p), p) == forward(x)` exactly, for
/// every point `p`: the A-FAN objective relies on the clean pass through `head`+`tail` being the
/// plain model, and the test suites check it for every point of every model.
pub trait SplitModel {
    /// What the model consumes (an image batch, or images plus targets for a detector).
    type Input;
    /// What the model produces (logits, or a structure of losses/predictions).
    type Output;

    /// A short name for messages (`resnet20`).
    fn model_name(&self) -> String;

    /// Canonical names of every cut point, in order from input to output.
    fn split_points(&self) -> Vec<String>;

    /// Resolves a point by its canonical name or a documented alias.
    fn split_point(&self, name: &str) -> Result<SplitPoint, SplitError> {
        let points = self.split_points();
        points
            .iter()
            .position(|p| p == name)
            .or_else(|| self.resolve_alias(name))
            .map(|index| SplitPoint {
                index,
                name: points[index].clone(),
            })
            .ok_or_else(|| SplitError::UnknownPoint {
                name: name.to_string(),
                model: self.model_name(),
                valid: points.clone(),
            })
    }

    /// Aliases beyond the canonical names (e.g. `layer1` for the last block of stage 1).
    fn resolve_alias(&self, _name: &str) -> Option<usize> {
        None
    }

    /// The whole network in one call.
    fn forward(&self, input: Self::Input) -> Self::Output;

    /// Runs the network up to and including the cut `point` and returns the feature there.
    fn forward_to(&self, input: Self::Input, point: &SplitPoint) -> Tensor<4>;

    /// Runs the rest of the network on a feature taken at `point`.
    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> Self::Output;
}
