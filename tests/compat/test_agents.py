"""The OpenAI Agents SDK (`openai-agents`), which drives the Responses API,
running agents against aitier: a plain answer, and a function tool that the
SDK itself executes between turns."""

import pytest
from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI

from conftest import REQUEST_TIMEOUT_S

# The SDK would otherwise export its traces to OpenAI's servers.
set_tracing_disabled(True)


@pytest.fixture(scope="module")
def responses_model(base_url: str, model: str) -> OpenAIResponsesModel:
    client = AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)
    return OpenAIResponsesModel(model=model, openai_client=client)


def test_an_agent_answers(responses_model):
    agent = Agent(
        name="greeter",
        instructions="Answer in one short sentence.",
        model=responses_model,
        model_settings=ModelSettings(temperature=0, max_tokens=24),
    )
    result = Runner.run_sync(agent, "Say hello.")
    assert isinstance(result.final_output, str) and result.final_output
    assert result.raw_responses[0].usage.input_tokens > 0


def test_an_agent_calls_a_tool_the_sdk_runs(responses_model):
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return "sunny, 21 C"

    agent = Agent(
        name="weather",
        instructions="Use the weather tool.",
        tools=[get_weather],
        model=responses_model,
        model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=80),
        tool_use_behavior="stop_on_first_tool",
    )
    result = Runner.run_sync(agent, "What is the weather in Paris?")
    assert len(cities) >= 1 and all(isinstance(c, str) and c for c in cities)
    assert result.final_output == "sunny, 21 C"
