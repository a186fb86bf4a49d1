"""A light validator for the subset of XML Schema that tests/data/junit.xsd uses (stdlib only;
lxml is not a dependency): global and local xs:element (by name, type or ref), named and inline
xs:complexType (mixed or not), xs:sequence and xs:choice with minOccurs/maxOccurs, xs:attribute
(use="required"; undeclared attributes refused), xs:string, and xs:int / xs:decimal restrictions
with minInclusive. validate(xml_text, xsd_path) returns the list of problems (empty: valid)."""

from __future__ import annotations

import decimal
import xml.etree.ElementTree as ET
from pathlib import Path

XS = "{http://www.w3.org/2001/XMLSchema}"


class _Schema:
    def __init__(self, path: Path) -> None:
        root = ET.parse(path).getroot()
        self.elements = {e.get("name"): e for e in root.findall(f"{XS}element")}
        self.complex = {t.get("name"): t for t in root.findall(f"{XS}complexType")}
        self.simple = {t.get("name"): t for t in root.findall(f"{XS}simpleType")}

    def check_value(self, type_name: str, value: str, where: str, problems: list[str]) -> None:
        if type_name == "xs:string":
            return
        base, least = type_name, None
        if type_name in self.simple:
            r = self.simple[type_name].find(f"{XS}restriction")
            base = r.get("base")
            m = r.find(f"{XS}minInclusive")
            least = None if m is None else decimal.Decimal(m.get("value"))
        try:
            number = decimal.Decimal(value)
        except decimal.InvalidOperation:
            problems.append(f"{where}: {value!r} is not a number ({type_name})")
            return
        if base == "xs:int" and number != number.to_integral_value():
            problems.append(f"{where}: {value!r} is not an integer ({type_name})")
        if least is not None and number < least:
            problems.append(f"{where}: {value!r} is below {least} ({type_name})")

    def validate(self, el: ET.Element, decl: ET.Element, problems: list[str], where: str) -> None:
        if decl.get("ref"):
            decl = self.elements[decl.get("ref")]
        where = f"{where}/{el.tag}"
        type_name = decl.get("type")
        ctype = decl.find(f"{XS}complexType")
        if type_name in self.complex:
            ctype = self.complex[type_name]
        if ctype is None:  # a simple type: text only
            if len(el) or el.attrib:
                problems.append(f"{where}: a simple element with attributes or children")
            return
        declared = {a.get("name"): a for a in ctype.findall(f"{XS}attribute")}
        for name in el.attrib:
            if name not in declared:
                problems.append(f"{where}: undeclared attribute {name!r}")
        for name, a in declared.items():
            if name in el.attrib:
                self.check_value(a.get("type", "xs:string"), el.attrib[name], f"{where}@{name}", problems)
            elif a.get("use") == "required":
                problems.append(f"{where}: missing the required attribute {name!r}")
        if ctype.get("mixed") != "true":
            texts = [el.text or ""] + [c.tail or "" for c in el]
            if any(t.strip() for t in texts):
                problems.append(f"{where}: text where only elements are allowed")
        particle = next((c for c in ctype if c.tag in (f"{XS}sequence", f"{XS}choice")), None)
        children = list(el)
        i = 0 if particle is None else self.match(particle, children, 0, problems, where)
        if i < len(children):
            problems.append(f"{where}: unexpected <{children[i].tag}> (child {i + 1})")

    def _name(self, decl: ET.Element) -> str:
        return decl.get("ref") or decl.get("name")

    def _occurs(self, p: ET.Element) -> tuple[int, float]:
        hi = p.get("maxOccurs", "1")
        return int(p.get("minOccurs", "1")), float("inf") if hi == "unbounded" else int(hi)

    def match(
        self, p: ET.Element, children: list[ET.Element], i: int, problems: list[str], where: str
    ) -> int:
        lo, hi = self._occurs(p)
        count = 0
        while count < hi and i < len(children):
            if p.tag == f"{XS}element":
                if children[i].tag != self._name(p):
                    break
                self.validate(children[i], p, problems, where)
                i += 1
            elif p.tag == f"{XS}choice":
                alt = next((a for a in p if self._name(a) == children[i].tag), None)
                if alt is None:
                    break
                self.validate(children[i], alt, problems, where)
                i += 1
            else:  # a sequence, once per occurrence
                start = i
                for sub in p:
                    i = self.match(sub, children, i, problems, where)
                if i == start:
                    break
            count += 1
        if count < lo and p.tag != f"{XS}sequence":
            problems.append(f"{where}: expected at least {lo} <{self._name(p) or 'choice'}>, found {count}")
        return i


def validate(xml_text: str, xsd_path: Path) -> list[str]:
    """The ways ``xml_text`` breaks the schema at ``xsd_path`` (empty when it is valid)."""
    schema = _Schema(xsd_path)
    root = ET.fromstring(xml_text)
    if root.tag not in schema.elements:
        return [f"root <{root.tag}> is not a global element of the schema"]
    problems: list[str] = []
    schema.validate(root, schema.elements[root.tag], problems, "")
    return problems
