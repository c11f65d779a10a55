// clamscan ships no types; this declares the part `portcullis quarantine rescan` uses.
declare module 'clamscan' {
  interface ScanResult {
    file: string;
    isInfected: boolean | null;
    viruses: string[];
  }
  interface Scanner {
    isInfected(file: string): Promise<ScanResult>;
  }
  export default class NodeClam {
    init(options: object): Promise<Scanner>;
  }
}
