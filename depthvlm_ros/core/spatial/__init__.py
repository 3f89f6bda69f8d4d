"""Measured spatial answers: what a question refers to, measured on the frame's depth map.

ROS-free. The modules, in the order an answer flows through them:

* :mod:`.pixels`: robust depth and 3-D point at pixels (``SpatialAnswer.depths`` / ``points``);
* :mod:`.regions`: image regions (``sensor_msgs/RegionOfInterest``) and their measurements
  (``RegionMeasurement``);
* :mod:`.question`: pixels, regions and distance thresholds written in a question, and what
  it asks (how far, which is nearer, distance between, how big, closer than ...);
* :mod:`.grounding`: the follow-up prompt that asks the model where a named object is, and the
  parser of its Qwen3-VL grounding JSON (and its writer, for training targets);
* :mod:`.wording`: the answer text, composed from the measurements only.

:func:`depthvlm_ros.core.answers.answer_question` ties them to the pipeline.
"""

from .grounding import (GROUNDING_SCALE, MAX_LOCATED, GroundingError, LocatedObject,
                        format_grounding, grounding_prompt, parse_grounding)
from .pixels import (DEFAULT_RADIUS, MAX_PIXELS, PixelMeasurements, measure_pixels,
                     points_for_pixels, sample_depth, sample_depths, valid_depth_mask,
                     validate_pixels)
from .question import (INTENTS, ParsedQuestion, Threshold, WrittenPixel, asks_about_object,
                       parse_question)
from .regions import (MAX_REGIONS, ORIGIN_LOCATED, ORIGIN_QUERY, Region, RegionMeasurement,
                      measure_region, measure_regions, validate_regions)
from .wording import compose_answer, format_metres, not_located_text, nothing_to_measure_text

__all__ = [
    "MAX_PIXELS", "DEFAULT_RADIUS", "validate_pixels", "sample_depth", "sample_depths",
    "points_for_pixels", "valid_depth_mask", "PixelMeasurements", "measure_pixels",
    "MAX_REGIONS", "ORIGIN_QUERY", "ORIGIN_LOCATED", "Region", "RegionMeasurement",
    "validate_regions", "measure_region", "measure_regions",
    "INTENTS", "Threshold", "WrittenPixel", "ParsedQuestion", "parse_question",
    "asks_about_object",
    "GROUNDING_SCALE", "MAX_LOCATED", "GroundingError", "LocatedObject", "grounding_prompt",
    "parse_grounding", "format_grounding",
    "compose_answer", "format_metres", "nothing_to_measure_text", "not_located_text",
]
