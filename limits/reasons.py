"""Reason codes and their texts in English and Chinese.

A ``Reason`` carries a code and the numbers behind it; the texts are rendered from the
templates below on demand, so bulk review does not spend time formatting sentences that
nobody reads. Every template says what happened and, where the user can act, what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LINE_NAMES = {
    "bnpl": ("BNPL line", "先用后付额度"),
    "cash_loan": ("cash-loan line", "现金贷额度"),
    None: ("account", "账户"),
}

# code: (English, Chinese). Placeholders come from Reason.params (and {line}).
TEMPLATES: dict[str, tuple[str, str]] = {
    "FRAUD_HOLD": (
        "Fraud risk {fraud_risk:.2f} is at or above {threshold:.2f}: no new credit on any "
        "line, the limit is withdrawn and the account is referred to {refer_to}.",
        "欺诈风险 {fraud_risk:.2f} 达到或超过 {threshold:.2f}：所有额度停止新增用信，"
        "额度收回，账户已转交{refer_to_zh}调查。",
    ),
    "OVERDUE_NOW": (
        "A repayment is overdue (bucket {bucket}): the {line} is cut by {cut:.0%} at once. "
        "Repay the overdue amount; raises resume after {window} on-time months.",
        "存在逾期（逾期档位 {bucket}）：{line_zh}立即下调 {cut:.0%}。"
        "请尽快还清逾期款项；连续按时还款 {window} 个月后才会重新考虑提额。",
    ),
    "HIGH_RISK": (
        "Risk band is high ({drivers}): the {line} is brought down to {target:,.0f}.",
        "风险等级为高（{drivers_zh}）：{line_zh}下调至 {target:,.0f}。",
    ),
    "CAP_APPLIED": (
        "The {line} is held at {ceiling:,.0f} by the {cap} cap.",
        "{line_zh}受“{cap_zh}”上限约束，不超过 {ceiling:,.0f}。",
    ),
    "RAISED": (
        "{months} on-time months in a row and regular use: the {line} rises from "
        "{current:,.0f} to {new:,.0f}.",
        "连续 {months} 个月按时还款且正常使用：{line_zh}由 {current:,.0f} 提升至 {new:,.0f}。",
    ),
    "STEP_LIMITED": (
        "A raise is at most {step_fraction:.0%} or {step_amount:,.0f} at a time; the "
        "{line} can keep rising towards {target:,.0f} in later reviews.",
        "单次提额不超过 {step_fraction:.0%} 或 {step_amount:,.0f}；{line_zh}可在之后的评估中"
        "继续向 {target:,.0f} 提升。",
    ),
    "OPENED": (
        "The {line} is opened with {new:,.0f}.",
        "已开通{line_zh}，额度 {new:,.0f}。",
    ),
    "KEPT": (
        "The {line} stays at {current:,.0f}.",
        "{line_zh}保持 {current:,.0f} 不变。",
    ),
    "NEEDS_ON_TIME_WINDOW": (
        "One on-time repayment is not enough: a raise needs {window} on-time months in a "
        "row, you have {months}; {missing} more.",
        "单次按时还款不足以提额：需要连续 {window} 个月按时还款，目前为 {months} 个月，"
        "还差 {missing} 个月。",
    ),
    "LOW_USAGE": (
        "Too little use for a raise: {what}. Use the {line} regularly.",
        "使用不足，暂不提额：{what_zh}。请正常、规律地使用{line_zh}。",
    ),
    "COOLDOWN": (
        "The {line} was raised on {last_raise}; the next raise is possible from {next_raise} "
        "({days} days between raises).",
        "{line_zh}已于 {last_raise} 提额；两次提额至少间隔 {days} 天，"
        "最早 {next_raise} 可再次提额。",
    ),
    "AT_TARGET": (
        "The {line} is already at what your risk and income support ({target:,.0f}); higher "
        "income, lower debts or a better credit score would raise it.",
        "{line_zh}已达到当前风险与收入所支持的水平（{target:,.0f}）；收入提高、负债减少或"
        "信用分提升后可提额。",
    ),
    "AT_MAXIMUM": (
        "The {line} is at the most the policy allows on it ({max_limit:,.0f}); it cannot "
        "rise further.",
        "{line_zh}已达到该产品的最高额度（{max_limit:,.0f}），无法继续提额。",
    ),
    "CAP_BINDS": (
        "The {cap} rule caps the {line} at {ceiling:,.0f}: {hint}.",
        "“{cap_zh}”规定{line_zh}不超过 {ceiling:,.0f}：{hint_zh}。",
    ),
    "BAND_NO_RAISE": (
        "Risk band {band} allows no raise ({drivers}).",
        "风险等级为{band_zh}，暂不提额（{drivers_zh}）。",
    ),
    "NOT_SCORED": (
        "Fraud and linked-account risk have not been scored yet; no raise or new line until "
        "they are.",
        "尚未完成欺诈及关联风险评分；评分完成前不提额、不开通新额度。",
    ),
    "DORMANT": (
        "The account has been inactive; limits are not raised until it is used again.",
        "账户近期不活跃；恢复使用前不提额。",
    ),
    "NEW_USER_BNPL_FIRST": (
        "New users get the BNPL line first; the cash-loan line can open after {months} months "
        "on book and {on_time} on-time months.",
        "新用户先开通先用后付额度；在用满 {months} 个月且按时还款 {on_time} 个月后"
        "可开通现金贷额度。",
    ),
    "NOT_ELIGIBLE_TO_OPEN": (
        "The {line} cannot open yet: {what}.",
        "{line_zh}暂不能开通：{what_zh}。",
    ),
    "NO_CAPACITY": (
        "Income after existing debts does not support more credit (ability to pay): "
        "{capacity:,.0f} in total.",
        "扣除现有负债后的收入不足以支持更多授信（还款能力上限 {capacity:,.0f}）。",
    ),
    "TEMP_RAISE": (
        "{season} temporary raise of {temp:,.0f} on the {line} until {until}; it ends by "
        "itself.",
        "{season_zh}临时额度 {temp:,.0f}（{line_zh}），有效期至 {until}，到期自动失效。",
    ),
    "TEMP_EXPIRED": (
        "The temporary raise on the {line} ended on {until}.",
        "{line_zh}的临时额度已于 {until} 到期失效。",
    ),
    "TEMP_WITHDRAWN": (
        "The temporary raise on the {line} is withdrawn with the reduction.",
        "{line_zh}的临时额度随额度下调一并取消。",
    ),
    "MACRO_TIGHTENING": (
        "A policy-wide prudential factor of {factor:.2f} applies to all targets.",
        "当前审慎系数为 {factor:.2f}，统一作用于所有额度目标。",
    ),
    "MONITORING": (
        "The account is in the high-risk stage and under closer monitoring.",
        "账户处于高风险阶段，已加强贷后监控。",
    ),
}

BAND_ZH = {"low": "低", "medium": "中", "high": "高"}
DRIVER_TEXT = {
    "default": ("default risk", "违约风险"),
    "fraud": ("fraud risk", "欺诈风险"),
    "relational": ("linked-account risk", "关联账户风险"),
    "ring": ("in or linked to a suspicious ring", "属于或关联可疑团伙"),
}
CAP_ZH = {
    "online_micro_loan": "网络小额贷款",
    "bank_consumer_loan_single": "单户个人消费贷款",
    "joint": "联合授信总额",
    "capacity": "还款能力",
    "line_max": "单产品最高额度",
    "split": "产品额度分配",
}
USAGE_TEXT = {
    "utilisation": ("{value:.0%} of the limit in use, {need:.0%} needed",
                    "额度使用率 {value:.0%}，需要至少 {need:.0%}"),
    "txns": ("{value:.1f} payments a month, {need:.0f} needed",
             "每月支付 {value:.1f} 笔，需要至少 {need:.0f} 笔"),
}
REFER_ZH = {"fraud investigation": "反欺诈调查团队"}


@dataclass(frozen=True)
class Reason:
    code: str
    line: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def _fmt(self, lang: int) -> str:
        p = dict(self.params)
        en, zh = LINE_NAMES.get(self.line, (str(self.line), str(self.line)))
        p.setdefault("line", en)
        p.setdefault("line_zh", zh)
        if "drivers" in p:
            ds = list(p["drivers"])
            p["drivers"] = ", ".join(DRIVER_TEXT[d][0] for d in ds) or "overall risk"
            p["drivers_zh"] = "、".join(DRIVER_TEXT[d][1] for d in ds) or "综合风险"
        if "band" in p:
            p["band_zh"] = BAND_ZH.get(p["band"], p["band"])
        if "cap" in p:
            p["cap_zh"] = CAP_ZH.get(p["cap"], p["cap"])
            p["cap"] = str(p["cap"]).replace("_", " ")
        if "refer_to" in p:
            p["refer_to_zh"] = REFER_ZH.get(p["refer_to"], p["refer_to"])
        if "usage" in p:
            parts = [USAGE_TEXT[k] for k, _, _ in p["usage"]]
            p["what"] = "; ".join(t[0].format(value=v, need=n)
                                  for t, (_, v, n) in zip(parts, p["usage"]))
            p["what_zh"] = "；".join(t[1].format(value=v, need=n)
                                    for t, (_, v, n) in zip(parts, p["usage"]))
        return TEMPLATES[self.code][lang].format(**p)

    @property
    def en(self) -> str:
        return self._fmt(0)

    @property
    def zh(self) -> str:
        return self._fmt(1)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "line": self.line, "params": self.params,
                "en": self.en, "zh": self.zh}
