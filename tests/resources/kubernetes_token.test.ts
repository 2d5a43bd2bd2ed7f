/**
 * The `kubernetes` token's `oidc` type: the issuer is required with the type, refused
 * without it, and only an https URL without query, fragment or credentials.
 */

import { describe, expect, test } from "bun:test";
import { parseResources } from "../../src/resources/index.ts";

const token = (kubernetes: string) =>
  `kind: token\nversion: v2\nmetadata:\n  name: k8s-oidc\nspec:\n  roles: [Bot]\n  bot_name: example\n  join_method: kubernetes\n  kubernetes:\n${kubernetes}    allow:\n      - service_account: "default:tbot"\n`;

describe("kubernetes token, type oidc", () => {
  test("loads with an https issuer", () => {
    const [t] = parseResources(token(`    type: oidc\n    oidc:\n      issuer: https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE\n`), "token.yaml");
    expect((t as { spec: { kubernetes: unknown } }).spec.kubernetes).toEqual({
      type: "oidc",
      oidc: { issuer: "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE" },
      allow: [{ service_account: "default:tbot" }],
    });
  });

  const refused: [string, string, string][] = [
    ["an http issuer", `    type: oidc\n    oidc:\n      issuer: http://oidc.example.com\n`, `Invalid value "http://oidc.example.com" for spec.kubernetes.oidc.issuer in token "k8s-oidc": expected the cluster's service-account issuer, an https:// URL such as "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE": the issuer's keys are only fetched over https`],
    ["an issuer that is no URL", `    type: oidc\n    oidc:\n      issuer: oidc.example.com\n`, `Invalid value "oidc.example.com" for spec.kubernetes.oidc.issuer`],
    ["an issuer with a query", `    type: oidc\n    oidc:\n      issuer: "https://oidc.example.com/?a=b"\n`, "without query, fragment or credentials"],
    ["type oidc without oidc", `    type: oidc\n`, `Missing required field "spec.kubernetes.oidc" in token "k8s-oidc": required when spec.kubernetes.type is "oidc"`],
    ["oidc with another type", `    type: in_cluster\n    oidc:\n      issuer: https://oidc.example.com\n`, `Unexpected field "spec.kubernetes.oidc" in token "k8s-oidc": only allowed when spec.kubernetes.type is "oidc"`],
  ];
  for (const [what, spec, message] of refused) {
    test(`refuses ${what}`, () => {
      expect(() => parseResources(token(spec), "token.yaml")).toThrow(message);
    });
  }
});
