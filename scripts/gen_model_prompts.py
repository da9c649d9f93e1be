"""Regenerates the model presets' prompts in src/sample/prompts/ from the
models' own code (not run by the test suite; the files are committed).

* qwen2_5_vl_system.txt, qwen3_vl_system.txt: "You are a helpful assistant."
  plus qwen-agent's function-call prompt over the cookbook's `computer_use`
  tool, as the cookbooks build it (`NousFnCallPrompt.preprocess_fncall_messages`:
  qwen-agent 0.0.34 `llm/fncall_prompts/nous_fncall_prompt.py` lines 90–98 and
  the template at 254–266; the tool's `function` dict of `tools/base.py`
  lines 165–172). `{screen}` stands for the "WxH" the tool is given.
* ui_tars_computer_use.txt: ui-tars 0.5.1 `ui_tars/prompt.py`
  `COMPUTER_USE_DOUBAO` (lines 3–30).
* ui_tars_grounding.txt: the same file's `GROUNDING_DOUBAO` (lines 59–60).
* opencua_l2_system.txt, opencua_l1_system.txt: OpenCUA
  `evaluation/agentnetbench/agent/opencua.py` `L2_SYSTEM_PROMPTS[0]`,
  `L1_SYSTEM_PROMPTS[0]` (lines 40–46).

Inputs, as the sources were read (commits in docs/steps.md):
  git --git-dir=QwenLM/Qwen2.5-VL show f0af299:cookbooks/utils/agent_function_call.py > Qwen2.5-VL.py
  git --git-dir=QwenLM/Qwen3-VL show 9658872:cookbooks/utils/agent_function_call.py > Qwen3-VL.py
  git --git-dir=xlang-ai/OpenCUA show 1d70f20:evaluation/agentnetbench/agent/opencua.py > opencua.py
  pip download --no-deps qwen-agent==0.0.34 ui-tars==0.5.1, unzipped into PKGS

usage: gen_model_prompts.py SRC_DIR PKGS OUT_DIR
"""
import importlib.util
import json
import pathlib
import sys
import types

src, pkgs, out = (pathlib.Path(a) for a in sys.argv[1:4])

# Stand-ins for the two names the cookbook file imports from qwen_agent.tools.base.
base = types.ModuleType("qwen_agent.tools.base")


class BaseTool:
    def __init__(self, cfg=None):
        self.cfg = cfg or {}

    @property
    def function(self):  # qwen-agent 0.0.34 tools/base.py lines 165-172
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def register_tool(name):
    def deco(cls):
        cls.name = name
        return cls
    return deco


base.BaseTool, base.register_tool = BaseTool, register_tool
for m in ["qwen_agent", "qwen_agent.tools"]:
    sys.modules[m] = types.ModuleType(m)
sys.modules["qwen_agent.tools.base"] = base

nous = (pkgs / "qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py").read_text()
start = nous.index('FN_CALL_TEMPLATE = """')
ns = {}
exec(nous[start:nous.index('"""', start + 22) + 3], ns)

for name, file in [("Qwen2.5-VL", "qwen2_5_vl_system.txt"), ("Qwen3-VL", "qwen3_vl_system.txt")]:
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), src / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tool = mod.ComputerUse(cfg={"display_width_px": 11111, "display_height_px": 22222})
    descs = json.dumps({"type": "function", "function": tool.function}, ensure_ascii=False)
    text = "You are a helpful assistant." + "\n\n" + ns["FN_CALL_TEMPLATE"].format(tool_descs=descs)
    assert text.count("11111x22222") == 1
    (out / file).write_text(text.replace("11111x22222", "{screen}"))

sys.path.insert(0, str(pkgs))
from ui_tars.prompt import COMPUTER_USE_DOUBAO, GROUNDING_DOUBAO  # noqa: E402

(out / "ui_tars_computer_use.txt").write_text(COMPUTER_USE_DOUBAO)
(out / "ui_tars_grounding.txt").write_text(GROUNDING_DOUBAO)

code = (src / "opencua.py").read_text()
consts = {}
exec(code.split("class OpenCUA")[0].split("from .base_agent import BaseAgent")[1], consts)
(out / "opencua_l2_system.txt").write_text(consts["L2_SYSTEM_PROMPTS"][0])
(out / "opencua_l1_system.txt").write_text(consts["L1_SYSTEM_PROMPTS"][0])
print("wrote", sorted(p.name for p in out.iterdir()))
