import json, sys, types, importlib.util
# Minimal stand-ins for qwen_agent.tools.base (only what the cookbook file imports).
base = types.ModuleType("qwen_agent.tools.base")
class BaseTool:
    def __init__(self, cfg=None): self.cfg = cfg or {}
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
sys.path.insert(0, "/tmp/up/x")
spec = importlib.util.spec_from_file_location("nous", "/tmp/up/x/qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py")
# Only the template constant is needed: read it from the source text.
src = open("/tmp/up/x/qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py").read()
start = src.index('FN_CALL_TEMPLATE = """')
ns = {}
exec(src[start:src.index('"""', start + 22) + 3], ns)
for name, out in [("Qwen2.5-VL", "qwen2_5_vl_system.txt"), ("Qwen3-VL", "qwen3_vl_system.txt")]:
    s = importlib.util.spec_from_file_location(name.replace(".", "_"), f"{name}.py")
    mod = importlib.util.module_from_spec(s); s.loader.exec_module(mod)
    tool = mod.ComputerUse(cfg={"display_width_px": 11111, "display_height_px": 22222})
    descs = json.dumps({"type": "function", "function": tool.function}, ensure_ascii=False)
    text = "You are a helpful assistant." + "\n\n" + ns["FN_CALL_TEMPLATE"].format(tool_descs=descs)
    assert text.count("11111x22222") == 1
    open(f"/work/main/src/sample/prompts/{out}", "w").write(text.replace("11111x22222", "{screen}"))
