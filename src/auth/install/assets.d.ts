// Text files the auth service embeds in the executable (`import x from "…" with { type: "text" }`).
declare module "*.sh" {
  const text: string;
  export default text;
}
declare module "*.service" {
  const text: string;
  export default text;
}
