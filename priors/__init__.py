"""Samplers of synthetic supervised datasets for pretraining prior-fitted networks."""

from priors.base import Batch, Prior, Range
from priors.bnn import BNNConfig, BNNPrior
from priors.choice import ChoiceConfig, ChoicePrior
from priors.glm import GLMConfig, GLMPrior
from priors.gp import GPConfig, GPPrior, kernel_matrix
from priors.mix import MixturePrior, build_prior
from priors.postprocess import PostprocessConfig
from priors.rules import RulesConfig, RulesPrior
from priors.scm import SCMConfig, SCMPrior

__all__ = [
    "Batch", "Prior", "Range", "BNNConfig", "BNNPrior", "ChoiceConfig", "ChoicePrior",
    "GLMConfig", "GLMPrior", "GPConfig", "GPPrior", "kernel_matrix",
    "MixturePrior", "build_prior", "PostprocessConfig", "RulesConfig", "RulesPrior", "SCMConfig",
    "SCMPrior",
]
